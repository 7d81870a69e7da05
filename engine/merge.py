"""Duplicate groups and merging (合并重复记录) for every entity, found from the metadata.

:func:`duplicate_groups` lists the groups of live records the duplicate matcher links
(``engine.duplicates.groups``), described for people: each record's display name and
owner, each shared key with its normalised value, and a score.

:func:`merge` (``engine.merge``, :func:`merge_records`) folds ``other_ids`` into the
survivor in one write transaction:

1. checks: the ids are ids, the survivor is not among the others, every record exists,
   is live and readable by the actor (else NotFound), the actor may update the survivor
   and update and delete each other record (else PermissionDenied);
2. re-points every ref to the others - in every entity of every plugin and of the admin's
   files (``EntityRegistry.referrers``: owned, ``owner_via``, parts, self-refs, admin
   extension fields) - to the survivor, with one SELECT and one UPDATE per referencing
   field and one multi-row INSERT of audit events (action ``merge``, the ref's old and new
   id) per field and 100 records. Live and recycle-bin records alike move; each moved
   record's ``version`` goes up by one. Live moved records are then told to the plugins
   (``record_written``, action ``update``, the ref's change), so roll-ups stay right;
3. shares the survivor with the others' members and owners (``guanxi_member``; entities
   with ``members: true``): a user keeps the higher of their accesses, the others' owners
   become ``edit`` members, the survivor's owner is never a member;
4. soft-deletes the others as ``records.delete`` does (audit ``merge`` naming the
   survivor, then ``delete``), so ``restore`` brings each back;
5. fills the survivor's empty fields (None, blank text, empty JSON) from the others, the
   first non-empty value in the order of ``other_ids``, through the ordinary update path
   (``before_commit``, audit ``update``, duplicate keys, ``record_written``). Never filled:
   ``owner`` (a hand-over is its own decision), the workflow's state field (only
   transitions move it), ``internal`` fields and ``unique`` fields (a unique value is the
   merged record's identity; it stays with it in the recycle bin, so restoring it never
   clashes), and refs into the merged set or to records the actor may not read. A ref of
   the survivor to one of the others counts as empty;
6. writes the survivor's ``merge`` audit event: merged ids and names, the re-pointed
   counts per field, the filled fields, the members added and a one-line ``summary``.

Workflow history, timers, the audit trail and notifications stay with the records they
belong to. Merging users is refused (accounts have credentials and tokens: deactivate
the duplicate and hand its records over instead).

Re-pointing writes with SQL statements, not through Pony objects: a caller that joins
its own transaction must not hold Pony objects of referencing records loaded before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .actor import SYSTEM, Actor
from .duplicates import DuplicateMatcher, display_field
from .errors import ConflictError, FieldProblem, NotFound, ValidationError
from .metadata import OWNER_ENTITY, EntitySpec, FieldSpec
from .permissions import owner_field
from .records import Record

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = [
    "MAX_OTHERS",
    "DuplicateGroup",
    "GroupKey",
    "GroupRecord",
    "MergeResult",
    "Repointed",
    "duplicate_groups",
    "merge",
    "merge_records",
]

#: At most this many records are merged into one survivor at a time.
MAX_OTHERS = 100
#: The largest id a table holds (64-bit).
MAX_ID = 2**63 - 1
#: Records loaded per query when telling plugins about re-pointed records.
CHUNK = 500
#: Audit events per multi-row INSERT.
AUDIT_ROWS = 100
ACCESS_RANK = {"read": 1, "edit": 2}


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Repointed:
    """``count`` records of ``entity`` whose ``field`` now names the survivor."""

    entity: str
    field: str
    count: int


@dataclass(frozen=True)
class MergeResult:
    """What a merge did. ``survivor`` is the record as the actor sees it afterwards;
    ``members`` lists ``(user id, access)`` added to the survivor or raised to edit."""

    survivor: Record
    merged_ids: tuple[int, ...]
    repointed: tuple[Repointed, ...]
    filled: tuple[str, ...]
    members: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class GroupRecord:
    """One record of a duplicate group: id, display name, owning user (None: unowned)."""

    id: int
    display: str
    owner_id: int | None
    owner_name: str | None


@dataclass(frozen=True)
class GroupKey:
    """A key value shared by ``record_ids`` inside a group. ``value`` is the normalised
    value (composite parts joined by U+001F), None when a field of the key is hidden from
    the caller."""

    key: str
    fields: tuple[str, ...]
    value: str | None
    record_ids: tuple[int, ...]


@dataclass(frozen=True)
class DuplicateGroup:
    """Records linked by shared keys. ``score`` = distinct keys shared inside the group /
    keys the entity has (1.0: every key matched)."""

    entity: str
    score: float
    records: tuple[GroupRecord, ...]
    keys: tuple[GroupKey, ...]


# -- duplicate groups --------------------------------------------------------------------------
def duplicate_groups(
    engine: Engine, entity: str, *, limit: int = 50, actor: Actor = SYSTEM
) -> list[DuplicateGroup]:
    """The best ``limit`` groups of live ``entity`` records the actor may read (see
    ``DuplicateMatcher.groups``), with names, owners and the shared key values."""
    records = engine.records
    spec = records.spec(entity)
    matcher = engine.duplicates
    sets = DuplicateMatcher.key_sets(spec)
    policy = engine.policy
    hidden = {f for fs in sets.values() for f in fs if not policy.readable_field(spec, actor, f)}
    with records.transaction():
        groups = matcher.groups(entity, limit=limit, actor=actor)
        about = matcher._describe(spec, {rid for g in groups for rid in g.record_ids})
    out = []
    for group in groups:
        members = tuple(GroupRecord(rid, *about[rid]) for rid in group.record_ids if rid in about)
        if len(members) < 2:  # deleted meanwhile
            continue
        keys = tuple(
            GroupKey(
                key=match.key,
                fields=sets[match.key],
                value=None if hidden & set(sets[match.key]) else match.value,
                record_ids=match.record_ids,
            )
            for match in group.matches
        )
        out.append(DuplicateGroup(spec.name, group.score, members, keys))
    return out


# -- merging -----------------------------------------------------------------------------------
def merge_records(
    engine: Engine,
    entity: str,
    survivor_id: Any,
    other_ids: Iterable[Any],
    actor: Actor = SYSTEM,
) -> Record:
    """Merge ``other_ids`` into ``survivor_id`` (see the module text); the survivor."""
    return merge(engine, entity, survivor_id, other_ids, actor).survivor


def merge(
    engine: Engine,
    entity: str,
    survivor_id: Any,
    other_ids: Iterable[Any],
    actor: Actor = SYSTEM,
) -> MergeResult:
    """Merge ``other_ids`` into ``survivor_id`` in one transaction; what it did.

    ValidationError for bad arguments (naming ``survivor_id`` or ``other_ids``), NotFound
    for a record that is missing or not readable, PermissionDenied when the actor may not
    update the survivor or update and delete another; nothing is changed then.
    """
    return _Merge(engine, entity, actor).run(survivor_id, other_ids)


class _Merge:
    def __init__(self, engine: Engine, entity: str, actor: Actor) -> None:
        self.engine = engine
        self.records = engine.records
        self.spec = self.records.spec(entity)
        self.actor = actor
        if self.spec.name == OWNER_ENTITY:
            raise ValidationError(
                FieldProblem(
                    entity,
                    None,
                    "users are not merged: deactivate the duplicate account and hand its "
                    "records over to the other",
                )
            )
        self.sqlite = engine.db.provider.dialect == "SQLite"

    # -- arguments -------------------------------------------------------------------------
    def _id(self, value: Any, argument: str) -> int:
        if isinstance(value, Record):
            if value.entity != self.spec.name:
                raise ValidationError(
                    FieldProblem(
                        self.spec.name,
                        argument,
                        f"{value.entity} #{value.get('id')} is not a {self.spec.name}; "
                        "only records of one entity are merged",
                    )
                )
            value = value.get("id")
        text = value.strip() if isinstance(value, str) else None
        number = int(text) if text and text.isascii() and text.isdigit() else value
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= MAX_ID:
            raise ValidationError(
                FieldProblem(self.spec.name, argument, f"{value!r} is not a record id")
            )
        return number

    def _ids(self, survivor_id: Any, other_ids: Iterable[Any]) -> tuple[int, list[int]]:
        if isinstance(other_ids, str | bytes | Record) or not isinstance(other_ids, Iterable):
            raise ValidationError(
                FieldProblem(self.spec.name, "other_ids", "must be a list of record ids")
            )
        survivor = self._id(survivor_id, "survivor_id")
        others: list[int] = []
        for value in other_ids:
            rid = self._id(value, "other_ids")
            if rid not in others:
                others.append(rid)
        if not others:
            raise ValidationError(
                FieldProblem(self.spec.name, "other_ids", "name at least one record to merge")
            )
        if len(others) > MAX_OTHERS:
            raise ValidationError(
                FieldProblem(
                    self.spec.name,
                    "other_ids",
                    f"names {len(others)} records; merge at most {MAX_OTHERS} at a time",
                )
            )
        if survivor in others:
            raise ValidationError(
                FieldProblem(
                    self.spec.name,
                    "other_ids",
                    f"{self.spec.name} #{survivor} is the survivor; a record is not merged "
                    "with itself",
                )
            )
        return survivor, others

    # -- the merge -------------------------------------------------------------------------
    def run(self, survivor_id: Any, other_ids: Iterable[Any]) -> MergeResult:
        survivor_id, other_ids = self._ids(survivor_id, other_ids)
        spec, records, actor = self.spec, self.records, self.actor
        with records.transaction(write=True):
            objs = self._load([survivor_id, *other_ids])
            survivor, others = objs[survivor_id], [objs[i] for i in other_ids]
            policy = self.engine.policy
            policy.check_write(spec, actor, "update", records._values(spec, survivor))
            for obj in others:
                values = records._values(spec, obj)
                policy.check_write(spec, actor, "update", values)
                policy.check_write(spec, actor, "delete", values)
            before = {obj.id: records._values(spec, obj) for obj in others}
            now = self.engine.now()
            self.engine.db.flush()
            moved = self._repoint(survivor_id, other_ids, now)
            members = self._share(survivor, others, now)
            names = {rid: self._name(values) for rid, values in before.items()}
            into = _titled(survivor_id, self._name(records._values(spec, survivor)))
            for obj in others:
                summary = f"Merged into {spec.label} {into}"
                records._audit(
                    spec, obj.id, "merge", {"merged_into": survivor_id, "summary": summary}, actor
                )
                records._soft_delete(spec, obj, now, actor)
            self._tell_plugins(moved, survivor_id)
            filled = self._fill(survivor, [before[i] for i in other_ids], set(objs))
            repointed = tuple(
                Repointed(source.name, f.name, len(rows)) for source, f, rows in moved if rows
            )
            records._audit(
                spec,
                survivor_id,
                "merge",
                self._summary(other_ids, names, repointed, filled, members),
                actor,
            )
            return MergeResult(
                survivor=records._record(spec, survivor, actor),
                merged_ids=tuple(other_ids),
                repointed=repointed,
                filled=tuple(filled),
                members=tuple(members),
            )

    def _load(self, ids: Sequence[int]) -> dict[int, Any]:
        """The records (locked, in id order), or NotFound / ValidationError for the first
        one missing, unreadable or in the recycle bin."""
        query = self.records.scoped_query(self.spec.name, self.actor, include_deleted=True)
        query = query.filter("lambda x: x.id in ids", {}, {"ids": list(ids)})
        found = {obj.id: obj for obj in query.order_by("lambda x: x.id", {}, {}).for_update()}
        for position, rid in enumerate(ids):
            argument = "survivor_id" if position == 0 else "other_ids"
            obj = found.get(rid)
            if obj is None:
                role = "the survivor" if position == 0 else "to be merged"
                raise NotFound(
                    f"{self.spec.name} #{rid} ({role}) does not exist or is not visible to "
                    "you; nothing was merged"
                )
            if obj.deleted_at is not None:
                raise ValidationError(
                    FieldProblem(
                        self.spec.name,
                        argument,
                        f"{self.spec.name} #{rid} is in the recycle bin; restore it first or "
                        "leave it out",
                    )
                )
        return found

    def _name(self, values: Mapping[str, Any]) -> str | None:
        """The record's name for people (see ``display_field``), if it has one."""
        name = display_field(self.spec)
        shown = values.get(name) if name else None
        return str(shown) if shown not in (None, "") else None

    # -- re-pointing -----------------------------------------------------------------------
    def _repoint(
        self, survivor_id: int, other_ids: list[int], now: datetime
    ) -> list[tuple[EntitySpec, FieldSpec, list[tuple[int, int, bool]]]]:
        """Point every ref to the others at the survivor: per referencing field one
        SELECT (locking the rows on PostgreSQL), one UPDATE and the audit INSERTs. Returns
        (entity, field, [(id, old target, live)]) for every referencing field."""
        merged = {survivor_id, *other_ids}
        out = []
        for source, f in self.engine.registry.referrers(self.spec.name):
            cls = self.engine.classes[source.name]
            table, column = cls._table_, cls._adict_[f.name].columns[0]
            where = f'"{column}" IN ({self._marks(len(other_ids))})'
            params: list[Any] = list(other_ids)
            if source.name == self.spec.name:  # self-refs: the merged records keep theirs
                where += f' AND "id" NOT IN ({self._marks(len(merged))})'
                params += sorted(merged)
            lock = "" if self.sqlite else " FOR UPDATE"
            cursor = self._cursor()
            cursor.execute(
                f'SELECT "id", "{column}", "deleted_at" FROM "{table}" WHERE {where} '
                f'ORDER BY "id"{lock}',
                params,
            )
            rows = [(rid, old, deleted is None) for rid, old, deleted in cursor.fetchall()]
            out.append((source, f, rows))
            if not rows:
                continue
            cursor.execute(
                f'UPDATE "{table}" SET "{column}" = {self._mark}, "version" = "version" + 1, '
                f'"updated_at" = {self._mark} WHERE {where}',
                [survivor_id, _db_value(cls, "updated_at", now), *params],
            )
            if cursor.rowcount != len(rows):
                raise ConflictError(
                    f"{source.name} records referring to the merged {self.spec.name} records "
                    "changed meanwhile; nothing was merged, try again"
                )
            self._audit_many(
                source.name,
                [(rid, {f.name: [old, survivor_id]}) for rid, old, _live in rows],
                now,
            )
        # as Pony's own bulk statements do: no query result read before is reused
        self.engine.db._get_cache().query_results.clear()
        return out

    def _tell_plugins(
        self, moved: list[tuple[EntitySpec, FieldSpec, list[tuple[int, int, bool]]]], survivor: int
    ) -> None:
        """Re-index the duplicate keys the move changed and send ``record_written``
        (action update) for every live moved record, loaded afresh in chunks."""
        matcher = self.engine.duplicates
        for source, f, rows in moved:
            live = {rid: old for rid, old, is_live in rows if is_live}
            if not live:
                continue
            cls = self.engine.classes[source.name]
            keyed = f.name in {n for fs in matcher.key_sets(source).values() for n in fs}
            ids = sorted(live)
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                objs = list(cls.select().filter("lambda x: x.id in ids", {}, {"ids": chunk}))
                if keyed:
                    matcher._delete(source.name, chunk)
                    matcher._insert(
                        source.name,
                        [(o.id, matcher.keys(source, matcher._stored(source, o))) for o in objs],
                    )
                for obj in objs:
                    change = {f.name: (live[obj.id], survivor)}
                    self.records._emit(source, obj, "update", change, self.actor)

    def _audit_many(
        self, entity: str, rows: list[tuple[int, dict[str, Any]]], at: datetime
    ) -> None:
        """``merge`` audit events of many records, a multi-row INSERT per AUDIT_ROWS."""
        audit = self.engine.classes["GxAudit"]
        when = _db_value(audit, "at", at)
        row = f"({self._marks(7)})"
        cursor = self._cursor()
        for start in range(0, len(rows), AUDIT_ROWS):
            chunk = rows[start : start + AUDIT_ROWS]
            values: list[Any] = []
            for rid, changes in chunk:
                values += [
                    entity,
                    rid,
                    "merge",
                    self.actor.id,
                    self.actor.username,
                    when,
                    json.dumps(changes, ensure_ascii=False, sort_keys=True),
                ]
            cursor.execute(
                f'INSERT INTO "{audit._table_}" ("entity", "record_id", "action", "actor_id", '
                '"actor", "at", "changes") VALUES ' + ", ".join([row] * len(chunk)),
                values,
            )

    # -- members ---------------------------------------------------------------------------
    def _share(self, survivor: Any, others: list[Any], now: datetime) -> list[tuple[int, str]]:
        """The others' members and owners as members of the survivor (see the module)."""
        spec = self.spec
        field = owner_field(spec)
        if not spec.members or field is None:
            return []
        table = self.engine.classes["GxMember"]
        wanted: dict[int, str] = {}
        other_ids = [o.id for o in others]
        for row in table.select().filter(
            "lambda m: m.entity == e and m.record_id in ids", {}, {"e": spec.name, "ids": other_ids}
        ):
            wanted[row.user_id] = _higher(wanted.get(row.user_id), row.access)
        for obj in others:
            owner = _pk(getattr(obj, field))
            if owner is not None:
                wanted[owner] = "edit"
        wanted.pop(_pk(getattr(survivor, field)), None)  # type: ignore[arg-type]
        if not wanted:
            return []
        current = {
            row.user_id: row
            for row in table.select().filter(
                "lambda m: m.entity == e and m.record_id == r",
                {},
                {"e": spec.name, "r": survivor.id},
            )
        }
        users = self.engine.classes[OWNER_ENTITY]
        live = {
            u.id
            for u in users.select().filter(
                "lambda u: u.id in ids and u.deleted_at is None", {}, {"ids": list(wanted)}
            )
        }
        added = []
        for user_id, access in sorted(wanted.items()):
            if user_id not in live:
                continue
            row = current.get(user_id)
            if row is None:
                table(
                    entity=spec.name,
                    record_id=survivor.id,
                    user_id=user_id,
                    access=access,
                    added_at=now,
                    added_by=self.actor.id,
                )
                added.append((user_id, access))
            elif ACCESS_RANK[access] > ACCESS_RANK.get(row.access, 0):
                row.access = access
                added.append((user_id, access))
        return added

    # -- filling ---------------------------------------------------------------------------
    def _fillable(self) -> list[FieldSpec]:
        runtime = self.engine.runtime
        wf = runtime.by_entity.get(self.spec.name) if runtime is not None else None
        skip = {"owner", wf.field if wf is not None else None}
        return [f for f in self.spec if f.name not in skip and not f.internal and not f.unique]

    def _fill(self, survivor: Any, others: list[dict[str, Any]], merged: set[int]) -> list[str]:
        """Fill the survivor's empty fields from ``others`` (their values before the
        merge) through the update path; the names of the fields filled."""
        spec, records = self.spec, self.records
        current = records._values(spec, survivor)
        values: dict[str, Any] = {}
        for f in self._fillable():
            mine = current[f.name]
            if not (_empty(mine) or (f.type == "ref" and f.to == spec.name and mine in merged)):
                continue
            for other in others:
                value = other[f.name]
                if _empty(value) or (f.type == "ref" and f.to == spec.name and value in merged):
                    continue
                values[f.name] = value
                break
            else:
                if not _empty(mine):  # a ref to a merged record, with nothing to take over
                    values[f.name] = None
        if values:  # refs only to live records the actor may read, as every update
            for problem in records._check_refs(spec, [values], self.actor):
                values.pop(problem.field or "", None)
        changes = {k: (current[k], v) for k, v in values.items() if current[k] != v}
        survivor.version = current["version"] + 1
        survivor.updated_at = self.engine.now()
        if changes:
            survivor.set(**records._pony_values(spec, {k: v for k, (_, v) in changes.items()}))
            records._finish(spec, survivor, "update", changes, self.actor)
        return [name for name in values if name in changes]

    def _summary(
        self,
        other_ids: list[int],
        names: Mapping[int, str | None],
        repointed: tuple[Repointed, ...],
        filled: list[str],
        members: list[tuple[int, str]],
    ) -> dict[str, Any]:
        """The survivor's ``merge`` audit event, with a one-line summary for people."""
        label = self.spec.label
        merged = ", ".join(_titled(rid, names[rid]) for rid in other_ids)
        parts = [f"Merged {label} {merged} into this record"]
        total = sum(r.count for r in repointed)
        if total:
            listed = ", ".join(f"{r.entity}.{r.field} {r.count}" for r in repointed)
            parts.append(f"re-pointed {total} record(s) ({listed})")
        if filled:
            parts.append(f"filled {', '.join(filled)}")
        if members:
            parts.append(f"added or raised {len(members)} member(s)")
        return {
            "merged_ids": list(other_ids),
            "merged_names": {str(rid): names[rid] for rid in other_ids},
            "repointed": [
                {"entity": r.entity, "field": r.field, "count": r.count} for r in repointed
            ],
            "filled": list(filled),
            "members": [{"user": u, "access": a} for u, a in members],
            "summary": "; ".join(parts),
        }

    # -- SQL helpers -----------------------------------------------------------------------
    @property
    def _mark(self) -> str:
        return "?" if self.sqlite else "%s"

    def _marks(self, count: int) -> str:
        return ", ".join([self._mark] * count)

    def _cursor(self) -> Any:
        return self.engine.db.get_connection().cursor()


def _titled(rid: int, name: str | None) -> str:
    """``#2 "XX酒业"`` (or ``#2`` for a record without a name)."""
    return f'#{rid} "{name}"' if name else f"#{rid}"


def _pk(obj: Any) -> int | None:
    return obj.get_pk() if obj is not None else None


def _db_value(cls: Any, attribute: str, value: Any) -> Any:
    """``value`` as Pony passes it for ``cls.attribute`` (SQLite datetimes are text)."""
    return cls._adict_[attribute].converters[0].py2sql(value)


def _higher(current: str | None, access: str) -> str:
    if current is None:
        return access
    return access if ACCESS_RANK.get(access, 0) > ACCESS_RANK.get(current, 0) else current


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict | list):
        return not value
    return False
