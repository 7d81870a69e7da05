"""Shared records: ``members`` of an entity declared ``members: true``, ``addMember`` and
``removeMember`` - thin resolvers over ``engine/permissions.py``, which checks who may
share, read and leave a record."""

from __future__ import annotations

import datetime
import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Optional

import strawberry
from strawberry.dataloader import DataLoader

from guanxi.engine import FieldProblem, NotFound, Record, ValidationError
from guanxi.engine.metadata import OWNER_ENTITY, EntitySpec
from guanxi.engine.permissions import (
    Member,
    add_member,
    members,
    owner_field,
    remove_member,
)

from .context import Context, call_engine, in_thread

#: permissions.py names its problems after the record's members; the API after arguments.
ARGUMENTS = {"members": None, "members.user": "user_id", "members.access": "access"}
_member_types: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()


def shares_records(spec: EntitySpec) -> bool:
    """Whether records of ``spec`` have members (an owned entity with ``members: true``)."""
    return spec.members and owner_field(spec) is not None


def member_type(user: type) -> type:
    """The ``RecordMember`` type of a schema whose user type is ``user`` (one per schema)."""
    found = _member_types.get(user)
    if found is not None:
        return found

    async def resolve_user(root: Any, info: strawberry.Info) -> Any:
        return await info.context.record_loader(OWNER_ENTITY).load(int(root.user_id))

    resolve_user.__annotations__ = {
        "root": Any,
        "info": strawberry.Info,
        "return": Optional[user],  # noqa: UP045
    }
    namespace = {
        "__annotations__": {
            "user_id": strawberry.ID,
            "access": str,
            "added_at": datetime.datetime,
        },
        "access": strawberry.field(description="read, or edit (update it, add records under it)"),
        "user": strawberry.field(resolver=resolve_user, description="null if deleted since"),
    }
    cls = strawberry.type(
        type("RecordMember", (), namespace),
        description="A user sharing a record besides its owner.",
    )
    _member_types[user] = cls
    return cls


def _shown(cls: type, member: Member) -> Any:
    return cls(
        user_id=strawberry.ID(str(member.user_id)), access=member.access, added_at=member.added_at
    )


def members_field(spec: EntitySpec, user: type) -> Any:
    """``members: [RecordMember!]!`` of a record, batched per request."""
    cls = member_type(user)

    async def resolve(root: Record, info: strawberry.Info) -> list[Any]:
        ctx: Context = info.context
        loader = ctx.loader(
            ("members", spec.name),
            lambda: DataLoader(functools.partial(_load_members, ctx, spec.name)),
        )
        return [_shown(cls, m) for m in await loader.load(root["id"])]

    resolve.__annotations__ = {"root": Any, "info": strawberry.Info, "return": list[cls]}
    return strawberry.field(
        resolver=resolve, description="Users sharing this record besides its owner."
    )


async def _load_members(ctx: Context, entity: str, ids: Sequence[int]) -> list[list[Member]]:
    actor = ctx.require_actor()

    def load() -> list[list[Member]]:
        found = []
        for rid in ids:
            try:
                found.append(members(ctx.engine, entity, rid, actor=actor))
            except NotFound:  # deleted meanwhile: no members to show
                found.append([])
        return found

    return await in_thread(load)


def member_mutations(user: type) -> dict[str, Any]:
    """``addMember`` and ``removeMember``."""
    cls = member_type(user)

    async def add(
        info: strawberry.Info,
        entity: str,
        id: strawberry.ID,
        user_id: strawberry.ID,
        access: Optional[str] = "read",  # noqa: UP045
    ) -> Any:
        ctx: Context = info.context
        actor = ctx.require_actor()
        uid = _user_id(entity, user_id)
        level = "read" if access is None else access
        added = await _with_argument_names(
            lambda: add_member(ctx.engine, entity, id, uid, level, actor=actor)
        )
        return _shown(cls, added)

    add.__annotations__ = {
        "info": strawberry.Info,
        "entity": str,
        "id": strawberry.ID,
        "user_id": strawberry.ID,
        "access": Optional[str],  # noqa: UP045
        "return": cls,
    }

    async def remove(
        info: strawberry.Info, entity: str, id: strawberry.ID, user_id: strawberry.ID
    ) -> bool:
        ctx: Context = info.context
        actor = ctx.require_actor()
        uid = _user_id(entity, user_id)
        return await _with_argument_names(
            lambda: remove_member(ctx.engine, entity, id, uid, actor=actor)
        )

    return {
        "add_member": strawberry.field(
            resolver=add,
            description="Share a record with a user (access read or edit); changes the "
            "access of a member. Needs update rights on the record.",
        ),
        "remove_member": strawberry.field(
            resolver=remove,
            description="Stop sharing a record with a user; false when they were no member. "
            "Needs update rights on the record, except to leave it yourself.",
        ),
    }


def _user_id(entity: str, value: Any) -> int:
    if not str(value).isdigit():
        raise ValidationError(FieldProblem(entity, "user_id", f"{value!r} is not a user id"))
    return int(value)


async def _with_argument_names(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; its problems name the mutation's arguments instead of ``members.*``."""
    try:
        return await call_engine(fn)
    except ValidationError as exc:
        renamed = [
            FieldProblem(p.entity, ARGUMENTS.get(p.field or "", p.field), p.message)
            for p in exc.problems
        ]
        raise ValidationError(renamed) from None
