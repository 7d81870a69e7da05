"""Roles and record scopes: the permission policy every record read and write passes.

:class:`RolePolicy` turns the scopes of ``roles.yaml`` (see roles.py) into Pony conditions
that the record API puts into the same SQL as the read, so lists, totals, single fetches,
nested ref filters and analytics all see exactly the records a role may read. Writes are
checked against the record as stored (a record the actor cannot read is NotFound before
any write check runs) and, for creates and hand-overs, against where the record lands.

Scopes, per role, entity and operation (read, create, update, delete; restore uses
delete):

- ``none``: nothing; ``all``: everything.
- ``own``: records the actor owns, or of which the actor is a member. Members are kept in
  the engine table ``guanxi_member`` for owned entities declared with ``members: true``;
  a ``read`` member counts for reads, an ``edit`` member for reads, updates and adding
  records owned through it (a note to a customer); deleting stays with the owner.
- ``team``: ``own``, plus records owned by users of the actor's team and its sub-teams.
- ``own_or_unowned``: ``own``, plus records without an owner (the shared pool).
- ``team_or_unowned``: ``team`` and ``own_or_unowned`` together (a supervisor who hands
  out pool customers).

An entity is owned when it is ``owned: true`` (its ``owner`` field) or ``owner_via`` a ref
to User. An entity ``owner_via`` another ref, or a part (``parent:``), follows the record
that ref points at: its condition is the target's, recursively along chains. Any other
entity is not owned: every scope but ``none`` reaches all of its records.

An actor with several roles gets the union of their scopes. The system and ``admin`` do
everything. Fixed rules no role widens: everyone may read User and Team records; only
admins create, delete or restore them or update teams; a user may update their own User
record, but only admins write ``roles``, ``team``, ``active`` and ``password_hash``.

Hidden fields: a field is hidden from an actor when every role of theirs that may read the
entity hides it (``hidden_fields``); ``internal`` fields are hidden from everyone but the
system. A hidden field reads as None, cannot be filtered or ordered on (it looks unknown)
and a write naming it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .actor import SYSTEM, Actor
from .errors import FieldProblem, PermissionDenied, ValidationError
from .metadata import OWNER_ENTITY, EntitySpec
from .policy import Condition
from .roles import RoleDef

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = [
    "ADMIN_ONLY_FIELDS",
    "FIXED_ENTITIES",
    "MEMBER_ACCESS",
    "Member",
    "RolePolicy",
    "add_member",
    "members",
    "remove_member",
]

#: Engine entities whose permissions are fixed rules, not role scopes.
FIXED_ENTITIES = frozenset({OWNER_ENTITY, "Team"})
#: Fields only admins may write, whatever the roles say.
ADMIN_ONLY_FIELDS: Mapping[str, frozenset[str]] = {
    OWNER_ENTITY: frozenset({"roles", "team", "active", "password_hash"}),
}
#: What a member may do with a shared record.
MEMBER_ACCESS = ("read", "edit")
#: The member access levels that count for each operation under ``own``.
_MEMBERS_COUNT = {"read": MEMBER_ACCESS, "create": ("edit",), "update": ("edit",), "delete": ()}


def owner_field(spec: EntitySpec) -> str | None:
    """The ref naming the user who owns a record of ``spec``, if records are owned."""
    if spec.owned:
        return "owner"
    if spec.owner_via and spec.fields[spec.owner_via].to == OWNER_ENTITY:
        return spec.owner_via
    return None


def via_field(spec: EntitySpec) -> str | None:
    """The ref whose target decides visibility (``owner_via`` or ``parent``), if any."""
    if owner_field(spec) is not None:
        return None
    return spec.owner_via or spec.parent


class RolePolicy:
    """The :class:`~.policy.Policy` of an engine's roles (``engine.role_defs``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- roles --------------------------------------------------------------------------
    def roles(self, actor: Actor) -> list[RoleDef]:
        """The actor's known roles; an unknown role name grants nothing."""
        defs = self.engine.role_defs
        return [defs[name] for name in sorted(actor.roles) if name in defs]

    def scopes(self, spec: EntitySpec, actor: Actor, operation: str) -> set[str]:
        """The scopes the actor's roles give for ``operation`` (read/create/update/delete)."""
        if actor.is_admin:
            return {"all"}
        found = {role.scope(spec.name, operation) for role in self.roles(actor)} - {"none"}
        if "team_or_unowned" in found:  # the union of the two scopes it names
            found = (found - {"team_or_unowned"}) | {"team", "own_or_unowned"}
        return found

    def _who(self, actor: Actor) -> str:
        return " / ".join(sorted(actor.roles)) or f"{actor.username} (no role)"

    # -- reading ------------------------------------------------------------------------
    def read_condition(self, spec: EntitySpec, actor: Actor, var: str) -> Condition | None:
        if actor.is_admin or spec.name in FIXED_ENTITIES:
            return None
        return self.condition(spec, actor, "read", var)

    def condition(
        self, spec: EntitySpec, actor: Actor, operation: str, var: str
    ) -> Condition | None:
        """The union of the actor's scopes for ``operation`` as a condition on ``var``.

        None means every record; ``("False", {})`` none. Bound values are named after
        ``var`` (``x_uid``), so conditions on different variables never clash.
        """
        scopes = frozenset(self.scopes(spec, actor, operation))
        return self._reach(spec, scopes, actor, var, _MEMBERS_COUNT[operation], frozenset())

    def _reach(
        self,
        spec: EntitySpec,
        scopes: frozenset[str],
        actor: Actor,
        var: str,
        access: tuple[str, ...],
        seen: frozenset[str],
    ) -> Condition | None:
        """The records of ``spec`` that ``scopes`` (a union, ``none`` left out) reach;
        members count when their access is one of ``access``."""
        if "all" in scopes:
            return None
        if not scopes:
            return "False", {}
        owner = owner_field(spec)
        if owner is not None:
            return self._ownership(spec, owner, scopes, actor, var, access)
        via = via_field(spec)
        if via is None:
            return None  # not owned: any scope but none reaches every record
        target = self.engine.registry[spec.fields[via].to]  # type: ignore[index]
        if target.name in seen or target.name == spec.name:
            return "False", {}  # a cycle of owner_via refs owns nothing
        inner_var = f"{var}_{via}"
        inner = self._reach(target, scopes, actor, inner_var, access, seen | {spec.name})
        if inner is None:
            return None
        text, values = inner
        column = f"{var}.{via}"
        parts = [f"{column} is None"] if "own_or_unowned" in scopes else []
        if text != "False":
            parts.append(
                f"({column} is not None and {column} in "
                f"({inner_var} for {inner_var} in {target.name} if {text}))"
            )
        return _any(parts), values

    def _ownership(
        self,
        spec: EntitySpec,
        owner: str,
        scopes: frozenset[str],
        actor: Actor,
        var: str,
        access: tuple[str, ...],
    ) -> Condition:
        # own < team and own < own_or_unowned: every scope left here includes "own"
        column = f"{var}.{owner}"
        parts: list[str] = []
        values: dict[str, Any] = {}
        uid = f"{var}_uid"
        if actor.id is not None:
            values[uid] = actor.id
            parts.append(f"({column} is not None and {column}.id == {uid})")
            if spec.members and access:
                m = f"{var}_m"
                values[f"{var}_ent"] = spec.name
                levels = "" if access == MEMBER_ACCESS else f" and {m}.access == '{access[0]}'"
                parts.append(
                    f"{var}.id in ({m}.record_id for {m} in GxMember "
                    f"if {m}.entity == {var}_ent and {m}.user_id == {uid}{levels})"
                )
        teams = _teams(actor)
        if "team" in scopes and teams:
            u = f"{var}_u"
            values[f"{var}_teams"] = teams
            parts.append(
                f"({column} is not None and {column} in "
                f"({u} for {u} in {OWNER_ENTITY} if {u}.team.id in {var}_teams))"
            )
        if "own_or_unowned" in scopes:
            parts.append(f"{column} is None")
        return _any(parts), values

    def readable_field(self, spec: EntitySpec, actor: Actor, field: str) -> bool:
        return field not in self.hidden_fields(spec, actor)

    def hidden_fields(self, spec: EntitySpec, actor: Actor) -> frozenset[str]:
        """Fields of ``spec`` the actor may not see (internal ones, and role-hidden ones)."""
        if actor.is_system:
            return frozenset()
        internal = {f.name for f in spec if f.internal}
        return frozenset(internal | self._role_hidden(spec, actor))

    def _role_hidden(self, spec: EntitySpec, actor: Actor) -> set[str]:
        """Fields hidden by EVERY role of the actor that may read ``spec`` (by all roles
        when none may: the actor then reads no record anyway)."""
        if actor.is_admin:
            return set()
        roles = self.roles(actor)
        readers = [
            r for r in roles if spec.name in FIXED_ENTITIES or r.scope(spec.name, "read") != "none"
        ] or roles
        if not readers:
            return set()
        hidden = set(readers[0].hidden_fields.get(spec.name, ()))
        for role in readers[1:]:
            hidden &= role.hidden_fields.get(spec.name, frozenset())
        return hidden

    def visible_values(
        self, spec: EntitySpec, actor: Actor, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``values`` with every field hidden from ``actor`` set to None."""
        hidden = self.hidden_fields(spec, actor)
        return {k: (None if k in hidden else v) for k, v in values.items()}

    # -- writing ------------------------------------------------------------------------
    def check_fields(
        self, spec: EntitySpec, actor: Actor, operation: str, fields: Iterable[str]
    ) -> None:
        """Refuse a create or update that names a field the actor may not write."""
        if actor.is_system:
            return
        names = set(fields)
        for name in sorted(names & self._role_hidden(spec, actor)):
            raise PermissionDenied(
                f"{spec.name}.{name} is hidden from {self._who(actor)} and cannot be written",
                field=name,
            )
        if not actor.is_admin:
            for name in sorted(names & ADMIN_ONLY_FIELDS.get(spec.name, frozenset())):
                raise PermissionDenied(f"only admins may write {spec.name}.{name}", field=name)

    def check_write(
        self, spec: EntitySpec, actor: Actor, operation: str, values: Mapping[str, Any]
    ) -> None:
        if actor.is_admin:
            return
        rid = values.get("id")
        label = f"{spec.name} #{rid}" if rid is not None else f"{spec.name} records"
        if spec.name in FIXED_ENTITIES:
            if spec.name == OWNER_ENTITY and operation == "update" and rid == actor.id:
                return  # their own user record; check_fields guards the admin-only fields
            raise PermissionDenied(f"only admins may {operation} {label}")
        scope_op = "delete" if operation == "restore" else operation
        scopes = self.scopes(spec, actor, scope_op)
        if not scopes:
            raise PermissionDenied(f"{self._who(actor)} may not {operation} {spec.name} records")
        reason = self._reason(actor, scopes, scope_op)
        if operation == "create":
            if not self._places(spec, frozenset(scopes), actor, values):
                raise PermissionDenied(
                    f"{self._who(actor)} may not create {spec.name} records "
                    f"{self._placement(spec, values)}: {reason}"
                )
            return
        condition = self.condition(spec, actor, scope_op, "x")
        if condition is not None and not self._matches(spec, rid, condition):
            what = " ".join(filter(None, [label, self._relation(spec, actor, rid)]))
            raise PermissionDenied(f"{self._who(actor)} may not {operation} {what}: {reason}")
        if operation == "update" and self._moves(spec, values):
            if not self._places(spec, frozenset(scopes), actor, values):
                raise PermissionDenied(
                    f"{self._who(actor)} may not hand {label} over "
                    f"{self._placement(spec, values, to=True)}: {reason}"
                )

    def _reason(self, actor: Actor, scopes: set[str], operation: str) -> str:
        mine = "records you own" if operation == "delete" else "records you own or edit as a member"
        reach = [mine]
        if "team" in scopes:
            reach.append("those of your team and its sub-teams")
        if "own_or_unowned" in scopes:
            reach.append("the shared pool")
        subject = "your roles reach" if len(actor.roles) > 1 else "the role reaches"
        listed = reach[0] if len(reach) == 1 else ", ".join(reach[:-1]) + " and " + reach[-1]
        return f"{subject} only {listed}"

    def _matches(self, spec: EntitySpec, rid: Any, condition: Condition) -> bool:
        text, bound = condition
        query = self.engine.classes[spec.name].select()
        query = query.filter("lambda x: x.id == gx_rid", {}, {"gx_rid": rid})
        return query.filter(f"lambda x: {text}", dict(self.engine.classes), bound).exists()

    def _places(
        self, spec: EntitySpec, scopes: frozenset[str], actor: Actor, values: Mapping
    ) -> bool:
        """Whether a record with ``values`` lands within ``scopes`` (creates, hand-overs)."""
        if "all" in scopes:
            return True
        owner = owner_field(spec)
        if owner is not None:
            owner_id = values.get(owner)
            if owner_id is None:
                return "own_or_unowned" in scopes
            if owner_id == actor.id:
                return bool(scopes)
            if "team" not in scopes or not _teams(actor):
                return False
            user = self.engine.classes[OWNER_ENTITY].get(id=owner_id)
            return user is not None and user.team is not None and user.team.id in _teams(actor)
        via = via_field(spec)
        if via is None:
            return bool(scopes)
        parent_id = values.get(via)
        if parent_id is None:
            return "own_or_unowned" in scopes
        target = self.engine.registry[spec.fields[via].to]  # type: ignore[index]
        edit = _MEMBERS_COUNT["update"]
        found = self._reach(target, scopes, actor, "x", edit, frozenset({spec.name}))
        return found is None or self._matches(target, parent_id, found)

    def _moves(self, spec: EntitySpec, values: Mapping[str, Any]) -> bool:
        """Whether an update changes the owner (or the record deciding visibility)."""
        ref = owner_field(spec) or via_field(spec)
        if ref is None:
            return False
        stored = self.engine.classes[spec.name].get(id=values["id"])
        target = getattr(stored, ref) if stored is not None else None
        return (target.id if target is not None else None) != values.get(ref)

    def _placement(self, spec: EntitySpec, values: Mapping[str, Any], *, to: bool = False) -> str:
        owner = owner_field(spec)
        if owner is not None:
            who = values.get(owner)
            if who is None:
                return "to the shared pool" if to else "in the shared pool"
            return f"to user #{who}" if to else f"owned by user #{who}"
        via = via_field(spec)
        if via is not None:
            target = spec.fields[via].to
            parent = values.get(via)
            return f"without a {target}" if parent is None else f"under {target} #{parent}"
        return ""

    def _relation(self, spec: EntitySpec, actor: Actor, rid: Any) -> str:
        """How a record the actor can read relates to them, in words (never its content)."""
        stored = self.engine.classes[spec.name].get(id=rid)
        owner = owner_field(spec)
        if owner is None:
            via = via_field(spec)
            if via is None:
                return ""
            parent = getattr(stored, via) if stored is not None else None
            target = self.engine.registry[spec.fields[via].to]  # type: ignore[index]
            if parent is None:
                return f"without a {target.name}"
            return f"under {target.name} #{parent.id} " + self._relation(target, actor, parent.id)
        user = getattr(stored, owner) if stored is not None else None
        if user is None:
            return "in the shared pool"
        if user.id == actor.id:
            return "owned by you"
        if spec.members and actor.id is not None:
            member = self.engine.classes["GxMember"].get(
                entity=spec.name, record_id=rid, user_id=actor.id
            )
            if member is not None:
                return f"shared with you for {'reading' if member.access == 'read' else 'editing'}"
        if user.team is not None and user.team.id in _teams(actor):
            return "owned by someone of your team"
        return "owned by another team"


def _any(parts: list[str]) -> str:
    if not parts:
        return "False"
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _teams(actor: Actor) -> list[int]:
    teams = set(actor.team_ids)
    if actor.team_id is not None:
        teams.add(actor.team_id)
    return sorted(teams)


# -- members ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """A user sharing one record besides its owner: ``access`` is read or edit."""

    entity: str
    record_id: int
    user_id: int
    access: str
    added_at: datetime
    added_by: int | None


def _member(row: Any) -> Member:
    return Member(row.entity, row.record_id, row.user_id, row.access, row.added_at, row.added_by)


def _shared_spec(engine: Engine, entity: str) -> EntitySpec:
    spec = engine.records.spec(entity)
    if not (spec.members and owner_field(spec) is not None):
        raise ValidationError(
            FieldProblem(
                entity,
                "members",
                "has no members: declare `members: true` on an owned entity to share its records",
            )
        )
    return spec


def _check_update(engine: Engine, spec: EntitySpec, obj: Any, actor: Actor) -> None:
    engine.policy.check_write(spec, actor, "update", engine.records._values(spec, obj))


def add_member(
    engine: Engine,
    entity: str,
    record_id: Any,
    user_id: int,
    access: str = "read",
    *,
    actor: Actor = SYSTEM,
) -> Member:
    """Share a record with ``user_id`` (``access`` read or edit); changes the access of an
    existing member. Needs update scope on the record (NotFound when the actor cannot
    read it, PermissionDenied when it cannot update it); audited as ``member_add``."""
    if access not in MEMBER_ACCESS:
        raise ValidationError(
            FieldProblem(entity, "members.access", f"must be {' or '.join(MEMBER_ACCESS)}")
        )
    spec = _shared_spec(engine, entity)
    records = engine.records
    with records.transaction(write=True):
        obj = records._load(spec, record_id, actor, deleted=False, lock=True)
        _check_update(engine, spec, obj, actor)
        user = engine.classes[OWNER_ENTITY].get(id=user_id)
        if user is None or user.deleted_at is not None:
            raise ValidationError(
                FieldProblem(entity, "members.user", f"User #{user_id} does not exist")
            )
        table = engine.classes["GxMember"]
        row = table.get(entity=spec.name, record_id=obj.id, user_id=user.id)
        before = {"user": user.id, "access": row.access} if row is not None else None
        if row is None:
            row = table(
                entity=spec.name,
                record_id=obj.id,
                user_id=user.id,
                access=access,
                added_at=engine.now(),
                added_by=actor.id,
            )
        else:
            row.access = access
        after = {"user": user.id, "access": access}
        if before != after:
            records._audit(spec, obj.id, "member_add", {"members": [before, after]}, actor)
        return _member(row)


def remove_member(
    engine: Engine, entity: str, record_id: Any, user_id: int, *, actor: Actor = SYSTEM
) -> bool:
    """Stop sharing a record with ``user_id``; False when they were no member.

    Needs update scope on the record, except for members leaving it themselves.
    Audited as ``member_remove``.
    """
    spec = _shared_spec(engine, entity)
    records = engine.records
    with records.transaction(write=True):
        obj = records._load(spec, record_id, actor, deleted=False, lock=True)
        if user_id != actor.id:
            _check_update(engine, spec, obj, actor)
        row = engine.classes["GxMember"].get(entity=spec.name, record_id=obj.id, user_id=user_id)
        if row is None:
            return False
        before = {"user": user_id, "access": row.access}
        row.delete()
        records._audit(spec, obj.id, "member_remove", {"members": [before, None]}, actor)
        return True


def members(engine: Engine, entity: str, record_id: Any, *, actor: Actor = SYSTEM) -> list[Member]:
    """The members of a record the actor may read (NotFound otherwise), by user id."""
    spec = _shared_spec(engine, entity)
    records = engine.records
    with records.transaction():
        obj = records._load(spec, record_id, actor, deleted=False)
        rows = (
            engine.classes["GxMember"]
            .select()
            .filter(
                "lambda m: m.entity == e and m.record_id == r", {}, {"e": spec.name, "r": obj.id}
            )
            .order_by("lambda m: m.user_id", {}, {})
        )
        return [_member(row) for row in rows]
