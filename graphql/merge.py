"""Duplicate groups and merging over GraphQL: ``duplicates`` and ``mergeRecords`` - thin
resolvers over ``engine/merge.py``, which checks who may see and merge what.

The generated object types are per entity, so both answer with generic types: a group
lists its records by id, name and owner; a merge answers with a :class:`MergeResult`
whose ``survivor`` is the survivor's values as JSON (camelCase names, refs as
``<field>Id``, money as ``{amount, currency}``). See docs/merge.md.
"""

from __future__ import annotations

from typing import Any, Optional

import strawberry
from strawberry.scalars import JSON

from guanxi.engine import Record
from guanxi.engine.merge import DuplicateGroup as Group
from guanxi.engine.merge import MergeResult as Result
from guanxi.engine.merge import duplicate_groups, merge
from guanxi.engine.records import to_json

from .context import Context, call_engine, in_thread
from .entities import page_size
from .types import camel


@strawberry.type(description="One record of a duplicate group.")
class DuplicateRecord:
    id: strawberry.ID
    name: str = strawberry.field(description="Its name, title or natural key.")
    owner_id: Optional[strawberry.ID] = strawberry.field(  # noqa: UP045
        description="The owning user (through owner_via refs too); null when unowned."
    )
    owner_name: Optional[str] = strawberry.field(  # noqa: UP045
        description="The owner's display name, or username."
    )


@strawberry.type(description="A key value that records of a group share.")
class DuplicateKey:
    key: str = strawberry.field(description="The duplicate key, e.g. name or phone.")
    fields: list[str] = strawberry.field(description="The fields it is made of.")
    value: Optional[str] = strawberry.field(  # noqa: UP045
        description="The normalised value they share (null when a field is hidden from you)."
    )
    record_ids: list[strawberry.ID]


@strawberry.type(description="Records that may be duplicates of each other.")
class DuplicateGroup:
    entity: str
    score: float = strawberry.field(
        description="Distinct keys shared inside the group / keys of the entity (1: all)."
    )
    records: list[DuplicateRecord]
    keys: list[DuplicateKey]


@strawberry.type(description="How many records of an entity now refer to the survivor.")
class RepointedRefs:
    entity: str
    field: str
    count: int


@strawberry.type(description="What mergeRecords did (one transaction).")
class MergeResult:
    entity: str
    survivor_id: strawberry.ID
    merged_ids: list[strawberry.ID] = strawberry.field(
        description="The records merged into the survivor, now in the recycle bin."
    )
    repointed: list[RepointedRefs]
    filled: list[str] = strawberry.field(
        description="The survivor's fields filled from the merged records."
    )
    members_added: int = strawberry.field(
        description="Users who now share the survivor, or whose access was raised to edit."
    )
    survivor: JSON = strawberry.field(  # type: ignore[valid-type]
        description="The survivor as you see it: camelCase fields, refs as <field>Id."
    )


def _group(group: Group) -> DuplicateGroup:
    return DuplicateGroup(
        entity=group.entity,
        score=group.score,
        records=[
            DuplicateRecord(
                id=strawberry.ID(str(r.id)),
                name=r.display,
                owner_id=strawberry.ID(str(r.owner_id)) if r.owner_id is not None else None,
                owner_name=r.owner_name,
            )
            for r in group.records
        ],
        keys=[
            DuplicateKey(
                key="+".join(camel(f) for f in k.fields),
                fields=[camel(f) for f in k.fields],
                value=k.value,
                record_ids=[strawberry.ID(str(i)) for i in k.record_ids],
            )
            for k in group.keys
        ],
    )


def record_json(record: Record, refs: set[str]) -> dict[str, Any]:
    """A record as JSON for clients: camelCase names, ``refs`` as ``<name>Id``."""
    return {
        camel(f"{name}_id" if name in refs else name): to_json(value)
        for name, value in record.items()
    }


def _result(ctx: Context, result: Result) -> MergeResult:
    spec = ctx.engine.registry[result.survivor.entity]
    return MergeResult(
        entity=spec.name,
        survivor_id=strawberry.ID(str(result.survivor["id"])),
        merged_ids=[strawberry.ID(str(i)) for i in result.merged_ids],
        repointed=[
            RepointedRefs(entity=r.entity, field=camel(r.field), count=r.count)
            for r in result.repointed
        ],
        filled=[camel(name) for name in result.filled],
        members_added=len(result.members),
        survivor=record_json(result.survivor, {f.name for f in spec.refs()}),
    )


def merge_fields() -> dict[str, Any]:
    """``duplicates`` (a query) and ``mergeRecords`` (a mutation)."""

    async def duplicates(
        info: strawberry.Info,
        entity: str,
        first: Optional[int] = None,  # noqa: UP045
    ) -> list[DuplicateGroup]:
        ctx: Context = info.context
        actor = ctx.require_actor()
        engine = ctx.engine
        limit = page_size(first, engine.config.page_size_max)
        groups = await in_thread(lambda: duplicate_groups(engine, entity, limit=limit, actor=actor))
        return [_group(g) for g in groups]

    async def merge_records(
        info: strawberry.Info,
        entity: str,
        survivor_id: strawberry.ID,
        other_ids: list[strawberry.ID],
    ) -> MergeResult:
        ctx: Context = info.context
        actor = ctx.require_actor()
        result = await call_engine(
            lambda: merge(ctx.engine, entity, survivor_id, list(other_ids), actor)
        )
        return _result(ctx, result)

    return {
        "duplicates": strawberry.field(
            resolver=duplicates,
            description="Groups of live records sharing a duplicate key (name, phone, ...), "
            "best first; only records you may read. first: at most that many groups.",
        ),
        "merge_records": strawberry.field(
            resolver=merge_records,
            description="Merge otherIds into survivorId in one transaction: every ref to them "
            "points at the survivor, its empty fields are filled from them, their members "
            "share it, and they go to the recycle bin. Needs update rights on all of them "
            "and delete rights on the others.",
        ),
    }
