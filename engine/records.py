"""The record API: the one code path through which every read and write goes.

GraphQL, the CLI, importers and plugin actions all call these methods. Each call takes
an ``actor``, applies the engine's permission policy in the same SQL, validates writes
against the metadata, writes an audit event in the same transaction and returns plain
immutable :class:`Record` values - never Pony objects, which must not leave a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pony.orm import (
    CommitException,
    OptimisticCheckError,
    TransactionIntegrityError,
    db_session,
    desc,
    select,
)
from pony.orm import core as pony_core
from pony.orm.dbapiprovider import Converter, IntegrityError, OperationalError

from .actor import SYSTEM, Actor
from .database import currency_column
from .errors import (
    BusyError,
    ConflictError,
    FieldProblem,
    GuanxiError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from .filters import compile_filter, compile_order
from .metadata import CURRENCY_SUFFIX, EntitySpec, FieldSpec
from .validation import Money, check_write

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

MAX_PROBLEMS = 1000
_NO_CHANGES: Mapping[str, Any] = MappingProxyType({})


class Record(Mapping[str, Any]):
    """An immutable snapshot of one stored record.

    Keys are the entity's field names plus ``id, created_at, updated_at, created_by,
    version, deleted_at``; a ref holds the target's id, a money field a :class:`Money`.
    Fields are also attributes: ``record.name``.
    """

    __slots__ = ("entity", "_data")

    def __init__(self, entity: str, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "entity", entity)
        object.__setattr__(self, "_data", MappingProxyType(dict(data)))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{self.entity} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("records are immutable; write through the record API")

    def __repr__(self) -> str:
        return f"<{self.entity} #{self._data.get('id')} {dict(self._data)!r}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self.entity == other.entity and dict(self._data) == dict(other._data)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RecordEvent:
    """What a write did; passed to the ``before_commit`` and ``record_written`` hooks."""

    entity: str
    action: str  # create, update, delete, restore
    record_id: int
    values: Mapping[str, Any]
    changes: Mapping[str, tuple[Any, Any]]
    actor: Actor
    #: written in bulk by ``create_many``: no parts were written with the record
    bulk: bool = False


@dataclass(frozen=True)
class Page:
    """One page of a list: records, the total matching, and the cursor to go on."""

    records: tuple[Record, ...]
    #: None when the list was asked not to count (``list(count=False)``)
    total_count: int | None
    has_next_page: bool
    end_cursor: str | None
    cursors: tuple[str, ...] = field(default=())


def to_json(value: Any) -> Any:
    """A stored value as JSON-ready data (audit trails, cursors, exports)."""
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class Records:
    """The record API of one Engine (``engine.records``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writers: dict[str, _BulkWriter] = {}

    # -- helpers ------------------------------------------------------------------------
    def spec(self, entity: str) -> EntitySpec:
        spec = self.engine.registry.get(entity)
        if spec is None:
            raise ValidationError(FieldProblem(entity, None, "is not a known entity"))
        return spec

    def _cls(self, entity: str) -> Any:
        return self.engine.classes[entity]

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[None]:
        """One database transaction (joins an enclosing one); races become ConflictError.

        ``write`` begins it at once (SQLite ``BEGIN IMMEDIATE``), so a concurrent writer
        waits for this one instead of failing on a stale snapshot later.
        """
        session = db_session(immediate=True) if write and not _in_session() else db_session
        try:
            with session:
                yield
        except (OptimisticCheckError, CommitException) as exc:
            if isinstance(exc, CommitException) and not _is_conflict(exc):
                raise
            raise ConflictError(
                "the record was changed by someone else meanwhile; reload it and try again"
            ) from exc
        except (TransactionIntegrityError, IntegrityError) as exc:
            raise ConflictError(
                f"the write breaks a uniqueness or reference rule of the database: {exc}"
            ) from exc
        except OperationalError as exc:
            if not _is_busy(exc):
                raise
            raise BusyError(
                "the database is busy with another write; try again in a moment"
            ) from exc

    def _values(self, spec: EntitySpec, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": obj.id,
            "created_at": obj.created_at,
            "updated_at": obj.updated_at,
            "created_by": obj.created_by,
            "version": obj.version,
            "deleted_at": obj.deleted_at,
        }
        for f in spec:
            if f.type == "ref":
                target = getattr(obj, f.name)
                data[f.name] = target.get_pk() if target is not None else None
            elif f.type == "money":
                amount = getattr(obj, f.name)
                currency = getattr(obj, currency_column(f.name))
                data[f.name] = Money(amount, currency) if amount is not None else None
            else:
                data[f.name] = getattr(obj, f.name)
        return data

    def _record(self, spec: EntitySpec, obj: Any, actor: Actor = SYSTEM) -> Record:
        """The record as ``actor`` sees it: fields hidden from them are None, and the
        ``mask_values`` hooks mask what plugins mask for them."""
        values = self._values(spec, obj)
        if not actor.is_system:
            values = self.engine.policy.visible_values(spec, actor, values)
            hook = self.engine.entity_hooks("mask_values", spec.name)
            if hook is not None:
                view = MappingProxyType(values)
                for shown in hook(engine=self.engine, actor=actor, entity=spec.name, values=view):
                    if shown:
                        values = {**values, **{k: v for k, v in shown.items() if k in values}}
        return Record(spec.name, values)

    def _pony_values(self, spec: EntitySpec, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in values.items():
            f = spec.fields[name]
            if f.type == "ref":
                out[name] = self._cls(f.to)[value] if value is not None else None  # type: ignore[index]
            elif f.type == "money":
                out[name] = value.amount if value is not None else None
                out[currency_column(name)] = value.currency if value is not None else None
            else:
                out[name] = value
        return out

    def _part_reverses(self, spec: EntitySpec) -> dict[str, tuple[EntitySpec, FieldSpec]]:
        """Reverse names of part entities (``parent:``) written together with ``spec``."""
        parts = {}
        for rname, rev in spec.reverses.items():
            source = self.engine.registry[rev.source]
            if source.parent == rev.field:
                parts[rname] = (source, source.fields[rev.field])
        return parts

    # -- reading ------------------------------------------------------------------------
    def scoped_query(
        self, entity: str, actor: Actor = SYSTEM, *, include_deleted: bool = False
    ) -> Any:
        """A Pony query of the ``entity`` records ``actor`` may read (inside a db_session).

        Plugins build analytics on it, so figures count only what the caller may see.
        """
        spec = self.spec(entity)
        query = self._cls(entity).select()
        if not include_deleted:
            query = query.filter("lambda x: x.deleted_at is None", {}, {})
        condition = self.engine.policy.read_condition(spec, actor, "x")
        if condition is not None:
            text, bound = condition
            query = query.filter(f"lambda x: {text}", self._globals(), bound)
        return query

    def _globals(self) -> dict[str, Any]:
        return {**self.engine.classes, "desc": desc}

    def _scope(self, actor: Actor) -> Callable[[str, str], tuple[str, dict] | None]:
        def scope(entity: str, var: str) -> tuple[str, dict] | None:
            return self.engine.policy.read_condition(self.spec(entity), actor, var)

        return scope

    def _readable(self, actor: Actor) -> Callable[[str, str], bool]:
        """Whether ``actor`` may filter and order on a field: not when it is hidden from
        them, nor when a plugin masks it for them (``masked_fields``)."""
        masked: dict[str, set[str]] = {}

        def readable(entity: str, field_name: str) -> bool:
            if entity not in masked:
                masked[entity] = set()
                hook = self.engine.entity_hooks("masked_fields", entity)
                if not actor.is_system and hook is not None:
                    for names in hook(engine=self.engine, actor=actor, entity=entity):
                        masked[entity].update(names or ())
            if field_name in masked[entity]:
                return False
            return self.engine.policy.readable_field(self.spec(entity), actor, field_name)

        return readable

    def _load(
        self,
        spec: EntitySpec,
        record_id: Any,
        actor: Actor,
        *,
        deleted: bool,
        lock: bool = False,
    ) -> Any:
        """The Pony object ``actor`` may read, or NotFound (a missing and an invisible
        record look the same). ``deleted`` chooses the live records or the recycle bin;
        ``lock`` holds the row (``FOR UPDATE``) until the transaction ends."""
        try:
            rid = int(record_id)
        except (TypeError, ValueError):
            raise NotFound(f"{spec.name} {record_id!r} does not exist") from None
        query = self.scoped_query(spec.name, actor, include_deleted=True)
        query = query.filter("lambda x: x.id == rid", {}, {"rid": rid})
        obj = (query.for_update() if lock else query).first()
        if obj is None or (obj.deleted_at is not None) != deleted:
            state = "in the recycle bin" if deleted else "among live records"
            raise NotFound(f"{spec.name} #{rid} does not exist {state} or is not visible to you")
        return obj

    def get(
        self, entity: str, record_id: Any, *, actor: Actor = SYSTEM, deleted: bool = False
    ) -> Record:
        """One record, or NotFound when it is missing or not visible to ``actor``."""
        spec = self.spec(entity)
        with self.transaction():
            return self._record(spec, self._load(spec, record_id, actor, deleted=deleted), actor)

    def list(
        self,
        entity: str,
        *,
        actor: Actor = SYSTEM,
        filter: Mapping[str, Any] | None = None,
        order_by: Sequence[Mapping[str, str]] | None = None,
        first: int | None = None,
        after: str | None = None,
        count: bool = True,
    ) -> Page:
        """A page of records matching ``filter`` (see filters.py), in ``order_by`` order.

        ``first`` defaults to the configured page size and is capped; ``after`` is a
        cursor from a previous page (opaque, signed). ``count=False`` leaves out the
        query counting every match (``total_count`` is then None): for a caller that
        only pages on.
        """
        spec = self.spec(entity)
        config = self.engine.config
        size = config.page_size_default if first is None else first
        if size < 0 or size > config.page_size_max:
            raise ValidationError(
                FieldProblem(entity, "first", f"must be between 0 and {config.page_size_max}")
            )
        offset = self._decode_cursor(entity, after) + 1 if after else 0
        compiled = compile_filter(
            self.engine.registry,
            self.engine.classes,
            entity,
            filter,
            scope=self._scope(actor),
            readable=self._readable(actor),
        )
        order = compile_order(
            self.engine.registry, entity, order_by, readable=self._readable(actor)
        )
        with self.transaction():
            if compiled.include_deleted and not actor.is_admin:
                raise PermissionDenied("only admins may list the recycle bin")
            query = self.scoped_query(entity, actor, include_deleted=compiled.include_deleted)
            query = compiled.apply(query)
            total = query.count() if count else None
            rows = list(query.order_by(order, self._globals(), {})[offset : offset + size + 1])
            records = tuple(self._record(spec, obj, actor) for obj in rows[:size])
        cursors = tuple(self._encode_cursor(entity, offset + i) for i in range(len(records)))
        return Page(
            records=records,
            total_count=total,
            has_next_page=len(rows) > size,
            end_cursor=cursors[-1] if cursors else None,
            cursors=cursors,
        )

    def _encode_cursor(self, entity: str, position: int) -> str:
        payload = json.dumps([entity, position], separators=(",", ":")).encode()
        mac = hmac.new(self.engine.secret, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def _decode_cursor(self, entity: str, cursor: str) -> int:
        bad = ValidationError(FieldProblem(entity, "after", "is not a cursor of this list"))
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload, mac = raw[:-12], raw[-12:]
            good = hmac.new(self.engine.secret, payload, hashlib.sha256).digest()[:12]
            if not hmac.compare_digest(mac, good):
                raise bad
            name, position = json.loads(payload)
        except (ValueError, TypeError):
            raise bad from None
        if name != entity or not isinstance(position, int) or position < 0:
            raise bad
        return position

    # -- checks that need the database ---------------------------------------------------
    def _check_refs(
        self,
        spec: EntitySpec,
        rows: Sequence[Mapping[str, Any]],
        actor: Actor,
        numbers: Sequence[int] | None = None,
    ) -> list[FieldProblem]:
        """Every ref value must name a live record the actor may read (one query a field)."""
        problems = []
        for f in spec.refs():
            wanted = {row[f.name] for row in rows if row.get(f.name) is not None}
            if not wanted:
                continue
            # owner refs point at users, whom ordinary actors may not list
            who = SYSTEM if f.name == "owner" else actor
            query = self.scoped_query(f.to, who).filter(  # type: ignore[arg-type]
                "lambda x: x.id in ids", {}, {"ids": list(wanted)}
            )
            found = set(select(x.id for x in query))  # ids only, no objects to build
            for i, row in enumerate(rows):
                value = row.get(f.name)
                if value is not None and value not in found:
                    problems.append(
                        FieldProblem(
                            spec.name,
                            f.name,
                            f"{f.to} #{value} does not exist",
                            row=_row(numbers, i),
                        )
                    )
        return problems

    def _check_unique(
        self,
        spec: EntitySpec,
        rows: Sequence[Mapping[str, Any]],
        exclude: int | None = None,
        numbers: Sequence[int] | None = None,
    ) -> list[FieldProblem]:
        """Unique fields must not repeat a value of another live record (nor in the batch)."""
        problems = []
        cls = self._cls(spec.name)
        for f in spec:
            if not f.unique:
                continue
            seen: dict[Any, int] = {}
            for i, row in enumerate(rows):
                value = row.get(f.name)
                if value is None:
                    continue
                if value in seen:
                    problems.append(
                        FieldProblem(
                            spec.name,
                            f.name,
                            f"{value!r} appears twice (also row {seen[value]})",
                            row=_row(numbers, i),
                        )
                    )
                seen.setdefault(value, _row(numbers, i) or i + 1)
            if not seen:
                continue
            taken = {
                getattr(obj, f.name): obj.id
                for obj in cls.select().filter(
                    f"lambda x: x.deleted_at is None and x.{f.name} in values",
                    {},
                    {"values": list(seen)},
                )
                if obj.id != exclude
            }
            for i, row in enumerate(rows):
                value = row.get(f.name)
                if value in taken:
                    problems.append(
                        FieldProblem(
                            spec.name,
                            f.name,
                            f"{value!r} is already used by {spec.name} #{taken[value]}",
                            row=_row(numbers, i),
                        )
                    )
        return problems

    def _without_state(
        self, spec: EntitySpec, data: dict[str, Any], *, creating: bool
    ) -> dict[str, Any]:
        """Refuse writes to a workflow's state field: only transitions move it. A create
        may name the initial state (it is where every record starts anyway)."""
        runtime = self.engine.runtime
        wf = runtime.by_entity.get(spec.name) if runtime is not None else None
        if wf is None or wf.field not in data:
            return data
        if creating and data[wf.field] in (None, wf.initial):
            return {k: v for k, v in data.items() if k != wf.field}
        raise ValidationError(
            FieldProblem(
                spec.name,
                wf.field,
                f"is moved only by the transitions of workflow {wf.name}; fire one instead",
            )
        )

    # -- writing --------------------------------------------------------------------------
    def create(
        self,
        entity: str,
        data: Mapping[str, Any],
        *,
        actor: Actor = SYSTEM,
        allow_duplicate: bool = False,
    ) -> Record:
        """Create one record (and its parts, given under their reverse names).

        A record of an entity with ``duplicate_keys`` that matches a live record is a
        ConflictError listing ``details["candidates"]``, unless ``allow_duplicate``.
        """
        spec = self.spec(entity)
        with self.transaction(write=True):
            record = self._create(spec, dict(data), actor)
            if not allow_duplicate:
                self.engine.duplicates.refuse(spec, record.id)
            return record

    def create_many(
        self,
        entity: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        actor: Actor = SYSTEM,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        allow_duplicate: bool = False,
        skip_invalid: bool = False,
        problems: list[FieldProblem] | None = None,
        numbers: Sequence[int] | None = None,
    ) -> list[int]:
        """Create many records in one transaction: all are written, or none.

        Rows are validated in batches (refs and uniqueness with one query per field and
        batch); every problem carries its 1-based row number. Every record is audited.
        Rows duplicating live records or each other are a ConflictError (see
        ``DuplicateMatcher.refuse_many``) unless ``allow_duplicate``.

        With ``skip_invalid`` the rows with problems - invalid values, refs or unique
        values, a refused create scope, a ``before_commit`` hook refusing the row - are
        left out, their problems appended to ``problems`` (which the caller must pass),
        and the other rows written; the ids returned are those of the written rows, in
        input order. Without it, ``problems`` (when given) receives every problem before
        the ValidationError is raised. ``numbers`` gives each row the number problems
        name it by (an importer's spreadsheet rows); by default rows count from 1.

        Entities without a workflow are written a batch at a time: the batch's records are
        inserted with one statement, ``before_commit`` runs for each, the audit events and
        duplicate keys are inserted with one statement each, and ``record_written`` runs
        for each record. Records of workflow-bound entities are inserted one by one,
        entering their initial state like :meth:`create`.
        """
        spec = self.spec(entity)
        if skip_invalid and problems is None:
            raise TypeError("create_many(skip_invalid=True) needs a `problems` list to fill")
        ids: list[int] = []
        found: list[FieldProblem] = []
        with self.transaction(write=True):
            batch: list[dict[str, Any]] = []
            start = 1
            for row in rows:
                batch.append(dict(row))
                if len(batch) >= batch_size:
                    ids.extend(
                        self._create_batch(spec, batch, start, actor, found, skip_invalid, numbers)
                    )
                    start += len(batch)
                    batch = []
                    if progress:
                        progress(start - 1)
            if batch:
                ids.extend(
                    self._create_batch(spec, batch, start, actor, found, skip_invalid, numbers)
                )
                if progress:
                    progress(start - 1 + len(batch))
            if problems is not None:
                problems.extend(found)
            if found and not skip_invalid:
                raise ValidationError(found[:MAX_PROBLEMS])
            if not allow_duplicate:
                self.engine.duplicates.refuse_many(spec, ids)
        return ids

    def _create_batch(
        self,
        spec: EntitySpec,
        batch: list[dict[str, Any]],
        start: int,
        actor: Actor,
        problems: list[FieldProblem],
        skip_invalid: bool,
        numbers: Sequence[int] | None = None,
    ) -> list[int]:
        """Validate and write one batch; ``problems`` holds those of earlier batches too:
        unless ``skip_invalid``, nothing more is written once it is not empty."""
        currency = self.engine.config.currency
        self.engine.policy.check_fields(spec, actor, "create", set().union(*batch))
        found: list[FieldProblem] = []
        checked: list[tuple[int, dict[str, Any]]] = []
        runtime = self.engine.runtime
        bound = runtime is not None and spec.name in runtime.by_entity
        owned = spec.owned and actor.id is not None
        for index, row in enumerate(batch, start):
            number = numbers[index - 1] if numbers is not None else index
            if bound:
                try:
                    row = self._without_state(spec, row, creating=True)
                except ValidationError as exc:
                    found.extend(_at_row(p, number) for p in exc.problems)
                    continue
            check = check_write(spec, row, creating=True, actor=actor, currency=currency)
            if check.problems:
                found.extend(_at_row(p, number) for p in check.problems)
            checked.append(
                (number, self._with_owner(spec, check.values, actor) if owned else check.values)
            )
        rows_for_db = [values for _number, values in checked]
        numbered = [number for number, _values in checked]
        found.extend(self._check_refs(spec, rows_for_db, actor, numbered))
        found.extend(self._check_unique(spec, rows_for_db, numbers=numbered))
        problems.extend(found)
        if problems and not skip_invalid:
            return []
        bad = {p.row for p in found}
        allowed: list[tuple[int, dict[str, Any]]] = []
        for number, values in checked:
            if number in bad:
                continue
            try:
                self.engine.policy.check_write(spec, actor, "create", values)
            except PermissionDenied as exc:
                if not skip_invalid:
                    raise
                problems.append(_refusal(spec, exc, number))
                continue
            allowed.append((number, values))
        if not bound:
            return self._insert_batch(spec, allowed, actor, problems, skip_invalid)
        objs = []
        for _number, values in allowed:
            obj = self._insert(spec, values, actor, finish=False)
            self._finish(spec, obj, "create", {}, actor, index_keys=False)
            objs.append(obj)
        self.engine.duplicates.index_many(spec, objs)  # keys in bulk
        return [obj.id for obj in objs]

    def _insert_batch(
        self,
        spec: EntitySpec,
        rows: list[tuple[int, dict[str, Any]]],
        actor: Actor,
        problems: list[FieldProblem],
        skip_invalid: bool,
    ) -> list[int]:
        """Write checked ``(row number, values)`` of an entity without workflow at once.

        The same steps as :meth:`_insert` and :meth:`_finish` for each record, in bulk:
        the records are inserted with one statement (ids taken first), ``before_commit``
        runs for each (what it computes is stored through Pony; a row it refuses is a
        problem of that row, and its record is taken out again), then one statement each
        writes the audit events and the duplicate keys, and ``record_written`` runs for
        each record.
        """
        if not rows:
            return []
        self.engine.db.flush()  # Pony's pending writes go before the raw statements
        writer = self._bulk_writer(spec)
        now = self.engine.now()
        template = dict.fromkeys(spec.fields)
        template.update(created_at=now, updated_at=now, created_by=actor.id, version=1)
        template["deleted_at"] = None
        found: list[FieldProblem] = []
        ready: list[tuple[int, dict[str, Any], RecordEvent | None]] = []
        dropped: list[int] = []
        engine, name = self.engine, spec.name
        before_commit = engine.entity_hooks("before_commit", name)
        record_written = engine.entity_hooks("record_written", name)
        records = []
        for (_number, values), rid in zip(rows, writer.allocate(len(rows)), strict=True):
            full = {**template, **values}
            full["id"] = rid
            records.append(full)
        writer.insert(records)
        # Pony keeps the results of this session's queries; rows it did not write itself
        # would not be in them (as its own flush does, forget them)
        cache = self.engine.db._get_cache()
        cache.query_results.clear()
        self._reopen_collections(spec, records, cache)
        for (number, _values), full in zip(rows, records, strict=True):
            if before_commit is None and record_written is None:
                ready.append((number, full, None))
                continue
            rid = full["id"]
            event = RecordEvent(
                name, "create", rid, MappingProxyType(full), _NO_CHANGES, actor, bulk=True
            )
            if before_commit is None:
                ready.append((number, full, event))
                continue
            try:
                extra = [result for result in before_commit(engine=engine, event=event) if result]
                if extra:
                    changes = self._computed(spec, full, extra)
                    if changes:  # stored through Pony; record_written learns of them
                        values = {k: full[k] for k in changes}
                        self._cls(name)[rid].set(**self._pony_values(spec, values))
                        event = RecordEvent(
                            name,
                            "create",
                            rid,
                            event.values,
                            MappingProxyType(changes),
                            actor,
                            bulk=True,
                        )
            except ValidationError as exc:
                found.extend(_at_row(p, number) for p in exc.problems)
                dropped.append(rid)
                continue
            except PermissionDenied as exc:
                if not skip_invalid:
                    raise
                found.append(_refusal(spec, exc, number))
                dropped.append(rid)
                continue
            ready.append((number, full, event))
        problems.extend(found)
        if problems and not skip_invalid:
            ready, dropped = [], [full["id"] for full in records]
        self.engine.db.flush()  # what hooks computed goes before the raw statements
        if dropped:
            writer.delete(dropped)
            cache.query_results.clear()
        if not ready:
            return []
        written = [full for _n, full, _e in ready]
        writer.audit(written, actor, now)
        matcher = self.engine.duplicates
        if spec.duplicate_keys:
            matcher._insert(spec.name, [(full["id"], matcher.keys(spec, full)) for full in written])
            cache.query_results.clear()
        if record_written is None:
            return [full["id"] for full in written]
        for number, _full, event in ready:
            try:
                record_written(engine=engine, event=event)
            except GuanxiError as exc:
                exc.message = f"row {number}: {exc.message}"
                exc.args = (exc.message,)
                raise
        return [full["id"] for full in written]

    def _computed(
        self, spec: EntitySpec, full: dict[str, Any], results: list[dict[str, Any]]
    ) -> dict[str, tuple[Any, Any]]:
        """Store what ``before_commit`` hooks returned for a record about to be created
        into its ``full`` values (checked as _finish checks it); return those changes."""
        extra: dict[str, Any] = {}
        for result in results:
            extra.update(result)
        check = check_write(
            spec, extra, creating=False, actor=SYSTEM, currency=self.engine.config.currency
        )
        if check.problems:
            raise ValidationError(check.problems)
        changes = {}
        for name, value in check.values.items():
            if full[name] != value:
                changes[name] = (full[name], value)
                full[name] = value
        return changes

    def _reopen_collections(self, spec: EntitySpec, rows: list[dict[str, Any]], cache: Any) -> None:
        """Rows written past Pony belong to the reverse collections of the records they refer
        to; Pony holds such a collection complete when it created the record in this session
        (or loaded the collection), and would call the new rows phantoms when it meets them.
        Mark those collections incomplete, so Pony reads them again."""
        cls = self._cls(spec.name)
        for f in spec:
            if f.type != "ref":
                continue
            reverse = getattr(cls, f.name).reverse
            if reverse is None or not reverse.is_collection:
                continue
            target = reverse.entity
            index = cache.indexes.get(target._pk_attrs_)
            if not index:
                continue
            for ref in {row[f.name] for row in rows if row.get(f.name) is not None}:
                obj = index.get(ref)
                setdata = obj._vals_.get(reverse) if obj is not None else None
                if setdata is not None:
                    setdata.is_fully_loaded = False
                    setdata.count = None

    def _bulk_writer(self, spec: EntitySpec) -> _BulkWriter:
        writer = self._writers.get(spec.name)
        if writer is None:
            writer = self._writers[spec.name] = _BulkWriter(self.engine, spec)
        return writer

    def _with_owner(self, spec: EntitySpec, values: dict[str, Any], actor: Actor) -> dict:
        # A record someone creates is theirs unless an owner is given; the system's
        # records (imports as system, demo data) start unowned, in the shared pool.
        if spec.owned and "owner" not in values and actor.id is not None:
            values = {**values, "owner": actor.id}
        return values

    def _create(self, spec: EntitySpec, data: dict[str, Any], actor: Actor) -> Record:
        parts = self._part_reverses(spec)
        part_rows = {name: data.pop(name) for name in list(data) if name in parts}
        self.engine.policy.check_fields(spec, actor, "create", data)
        data = self._without_state(spec, data, creating=True)
        check = check_write(
            spec, data, creating=True, actor=actor, currency=self.engine.config.currency
        )
        values = self._with_owner(spec, check.values, actor)
        problems = check.problems + self._check_refs(spec, [values], actor)
        problems += self._check_unique(spec, [values])
        if problems:
            raise ValidationError(problems)
        self.engine.policy.check_write(spec, actor, "create", values)
        obj = self._insert(spec, values, actor, finish=False)
        for name, rows in part_rows.items():
            self._write_parts(spec, obj, name, rows, parts[name], actor)
        self._finish(spec, obj, "create", {}, actor)
        return self._record(spec, obj, actor)

    def _insert(
        self, spec: EntitySpec, values: Mapping[str, Any], actor: Actor, *, finish: bool = True
    ) -> Any:
        now = self.engine.now()
        obj = self._cls(spec.name)(
            created_at=now,
            updated_at=now,
            created_by=actor.id,
            version=1,
            **self._pony_values(spec, values),
        )
        obj.flush()
        runtime = self.engine.runtime
        if runtime is not None:
            runtime.record_created(spec.name, obj, actor)
        if finish:
            self._finish(spec, obj, "create", {}, actor)
        return obj

    def _write_parts(
        self,
        spec: EntitySpec,
        parent: Any,
        name: str,
        rows: Any,
        part: tuple[EntitySpec, FieldSpec],
        actor: Actor,
    ) -> None:
        """Replace the parts listed under ``name`` with ``rows`` (soft-deleting old ones)."""
        part_spec, parent_field = part
        if not isinstance(rows, list):
            raise ValidationError(FieldProblem(spec.name, name, "must be a list"))
        now = self.engine.now()
        for old in getattr(parent, name).select(lambda p: p.deleted_at is None):
            before = self._values(part_spec, old)
            old.deleted_at = now
            old.version += 1
            self._audit(part_spec, old.id, "delete", {"deleted_at": [None, to_json(now)]}, actor)
            self._emit(part_spec, old, "delete", {"deleted_at": (before["deleted_at"], now)}, actor)
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValidationError(
                    FieldProblem(spec.name, f"{name}[{index}]", "must be an object")
                )
            try:
                self._create(part_spec, {**row, parent_field.name: parent.id}, actor)
            except ValidationError as exc:
                raise ValidationError(
                    [
                        FieldProblem(spec.name, f"{name}[{index}].{p.field}", p.message)
                        for p in exc.problems
                    ]
                ) from None

    def _finish(
        self,
        spec: EntitySpec,
        obj: Any,
        action: str,
        changes: dict[str, tuple[Any, Any]],
        actor: Actor,
        *,
        index_keys: bool = True,
    ) -> None:
        """Run before_commit (computed fields), write the audit event, tell the plugins,
        keep the duplicate keys (unless ``index_keys`` is False: create_many bulk-writes)."""
        before_commit = self.engine.entity_hooks("before_commit", spec.name)
        if action in ("create", "update") and before_commit is not None:
            event = self._event(spec, obj, action, changes, actor)
            extra: dict[str, Any] = {}
            for result in before_commit(engine=self.engine, event=event):
                if result:
                    extra.update(result)
            if extra:
                check = check_write(
                    spec,
                    extra,
                    creating=False,
                    actor=SYSTEM,
                    currency=self.engine.config.currency,
                )
                if check.problems:
                    raise ValidationError(check.problems)
                current = self._values(spec, obj)
                for name, value in check.values.items():
                    if current[name] != value:
                        changes[name] = (current[name], value)
                obj.set(**self._pony_values(spec, check.values))
        if action == "create":
            values = self._values(spec, obj)
            audit = {
                name: [None, to_json(value)]
                for name, value in values.items()
                if value is not None and name in spec.fields
            }
        else:
            audit = {name: [to_json(old), to_json(new)] for name, (old, new) in changes.items()}
        for name in audit:
            # secrets (password hashes) never reach the audit trail, only the fact of a change
            if name in spec.fields and spec.fields[name].internal:
                audit[name] = [None, "(changed)"]
        self._audit(spec, obj.id, action, audit, actor)
        if index_keys:
            self.engine.duplicates.index(spec, obj, action, changes)
        self._emit(spec, obj, action, changes, actor)

    def _event(
        self, spec: EntitySpec, obj: Any, action: str, changes: Mapping, actor: Actor
    ) -> RecordEvent:
        return RecordEvent(
            entity=spec.name,
            action=action,
            record_id=obj.id,
            values=MappingProxyType(self._values(spec, obj)),
            changes=MappingProxyType(dict(changes)),
            actor=actor,
        )

    def _emit(
        self, spec: EntitySpec, obj: Any, action: str, changes: Mapping, actor: Actor
    ) -> None:
        hook = self.engine.entity_hooks("record_written", spec.name)
        if hook is not None:
            hook(engine=self.engine, event=self._event(spec, obj, action, changes, actor))

    def _audit(
        self, spec: EntitySpec, record_id: int, action: str, changes: dict, actor: Actor
    ) -> None:
        self.engine.classes["GxAudit"](
            entity=spec.name,
            record_id=record_id,
            action=action,
            actor_id=actor.id,
            actor=actor.username,
            at=self.engine.now(),
            changes=changes,
        )

    def update(
        self,
        entity: str,
        record_id: Any,
        data: Mapping[str, Any],
        *,
        actor: Actor = SYSTEM,
        expected_version: int | None = None,
        allow_duplicate: bool = False,
    ) -> Record:
        """Patch a record: fields not in ``data`` are never touched.

        With ``expected_version`` a stale write is a ConflictError; without it, a race
        with another writer is still detected by the version column. Changing a duplicate
        key to match a live record is a ConflictError unless ``allow_duplicate``.
        """
        spec = self.spec(entity)
        with self.transaction(write=True):
            obj = self._load(spec, record_id, actor, deleted=False, lock=True)
            _check_version(spec, obj, expected_version)
            data = dict(data)
            parts = self._part_reverses(spec)
            part_rows = {name: data.pop(name) for name in list(data) if name in parts}
            self.engine.policy.check_fields(spec, actor, "update", data)
            current = self._values(spec, obj)
            data = self._without_state(spec, data, creating=False)
            check = check_write(
                spec,
                data,
                creating=False,
                actor=actor,
                currency=self.engine.config.currency,
                current=current,
            )
            changed = {k: v for k, v in check.values.items() if current[k] != v}
            problems = check.problems + self._check_refs(spec, [changed], actor)
            problems += self._check_unique(spec, [changed], exclude=obj.id)
            if problems:
                raise ValidationError(problems)
            # a write that changes nothing still needs the right to make it
            self.engine.policy.check_write(spec, actor, "update", {**current, **changed})
            if not changed and not part_rows:
                return self._record(spec, obj, actor)
            obj.set(**self._pony_values(spec, changed))
            obj.version = current["version"] + 1
            obj.updated_at = self.engine.now()
            for name, rows in part_rows.items():
                self._write_parts(spec, obj, name, rows, parts[name], actor)
            changes = {k: (current[k], v) for k, v in changed.items()}
            self._finish(spec, obj, "update", changes, actor)
            if not allow_duplicate:
                self.engine.duplicates.refuse(spec, obj.id, changed=changes)
            return self._record(spec, obj, actor)

    def delete(
        self,
        entity: str,
        record_id: Any,
        *,
        actor: Actor = SYSTEM,
        expected_version: int | None = None,
    ) -> Record:
        """Soft-delete a record (and its parts) into the recycle bin.

        Refused with ConflictError while live records refer to it through a required ref.
        """
        spec = self.spec(entity)
        with self.transaction(write=True):
            obj = self._load(spec, record_id, actor, deleted=False, lock=True)
            _check_version(spec, obj, expected_version)
            parts = self._part_reverses(spec)
            part_fields = {(p.name, f.name) for p, f in parts.values()}
            for source, f in self.engine.registry.referrers(spec.name):
                if not f.required or (source.name, f.name) in part_fields:
                    continue
                live = (
                    self._cls(source.name)
                    .select()
                    .filter(
                        f"lambda x: x.deleted_at is None and x.{f.name} == target",
                        {},
                        {"target": obj},
                    )
                    .count()
                )
                if live:
                    raise ConflictError(
                        f"{spec.name} #{obj.id} cannot be deleted: {live} live {source.name} "
                        f"record(s) refer to it through {source.name}.{f.name}"
                    )
            self.engine.policy.check_write(spec, actor, "delete", self._values(spec, obj))
            now = self.engine.now()
            for name, (part_spec, _f) in parts.items():
                for part in getattr(obj, name).select(lambda p: p.deleted_at is None):
                    self._soft_delete(part_spec, part, now, actor)
            self._soft_delete(spec, obj, now, actor)
            return self._record(spec, obj, actor)

    def _soft_delete(self, spec: EntitySpec, obj: Any, now: datetime, actor: Actor) -> None:
        obj.deleted_at = now
        obj.version += 1
        self._finish(spec, obj, "delete", {"deleted_at": (None, now)}, actor)

    def restore(self, entity: str, record_id: Any, *, actor: Actor = SYSTEM) -> Record:
        """Bring a record (and the parts deleted with it) back from the recycle bin.

        A ConflictError when a unique value was reused meanwhile.
        """
        spec = self.spec(entity)
        with self.transaction(write=True):
            obj = self._load(spec, record_id, actor, deleted=True, lock=True)
            values = self._values(spec, obj)
            clashes = self._check_unique(spec, [values], exclude=obj.id)
            if clashes:
                raise ConflictError(
                    f"{spec.name} #{obj.id} cannot be restored: "
                    + "; ".join(f"{p.field} {p.message}" for p in clashes)
                )
            self.engine.policy.check_write(spec, actor, "restore", values)
            deleted_at = obj.deleted_at
            for name, (part_spec, _f) in self._part_reverses(spec).items():
                for part in getattr(obj, name).select(lambda p: p.deleted_at == deleted_at):
                    self._undelete(part_spec, part, actor)
            self._undelete(spec, obj, actor)
            return self._record(spec, obj, actor)

    def _undelete(self, spec: EntitySpec, obj: Any, actor: Actor) -> None:
        before = obj.deleted_at
        obj.deleted_at = None
        obj.version += 1
        obj.updated_at = self.engine.now()
        self._finish(spec, obj, "restore", {"deleted_at": (before, None)}, actor)

    def audit(
        self, entity: str, record_id: int, action: str, changes: dict[str, Any], *, actor: Actor
    ) -> None:
        """Add an audit event to a record's trail (inside the caller's transaction, or in
        one of its own): ``action`` names what happened (``claim``, at most 16
        characters), ``changes`` is JSON-ready data, ``actor`` who did it."""
        if not action or len(action) > 16:
            raise ValidationError(
                FieldProblem(entity, "action", "must be a name of 1 to 16 characters")
            )
        spec = self.spec(entity)
        with self.transaction(write=True):
            self._audit(spec, record_id, action, changes, actor)

    def audit_trail(self, entity: str, record_id: int) -> list[dict[str, Any]]:
        """The audit events of one record, oldest first (for admins and tests)."""
        audit = self.engine.classes["GxAudit"]
        with self.transaction():
            rows = (
                audit.select()
                .filter(
                    "lambda a: a.entity == e and a.record_id == r",
                    {},
                    {"e": entity, "r": record_id},
                )
                .order_by("lambda a: a.id", {}, {})
            )
            return [
                {
                    "action": a.action,
                    "actor": a.actor,
                    "actor_id": a.actor_id,
                    "at": a.at,
                    "changes": dict(a.changes or {}),
                }
                for a in rows
            ]

    def audit_log(
        self,
        *,
        entity: str | None = None,
        actions: Sequence[str] | None = None,
        actor_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit events of every record, newest first, at most ``limit``: those of
        ``entity``, of the ``actions`` given (``export``, ``export_refused``, ``create``...)
        and by the user ``actor_id`` when given (for admins: ``guanxi audit``)."""
        audit = self.engine.classes["GxAudit"]
        with self.transaction():
            query = audit.select()
            if entity is not None:
                query = query.filter("lambda a: a.entity == e", {}, {"e": entity})
            if actions:
                query = query.filter("lambda a: a.action in acts", {}, {"acts": list(actions)})
            if actor_id is not None:
                query = query.filter("lambda a: a.actor_id == u", {}, {"u": actor_id})
            rows = query.order_by("lambda a: desc(a.id)", {"desc": desc}, {})[:limit]
            return [
                {
                    "entity": a.entity,
                    "record_id": a.record_id,
                    "action": a.action,
                    "actor": a.actor,
                    "actor_id": a.actor_id,
                    "at": a.at,
                    "changes": dict(a.changes or {}),
                }
                for a in rows
            ]


def _row(numbers: Sequence[int] | None, index: int) -> int | None:
    """The number of row ``index`` of a batch, when the rows are numbered."""
    return numbers[index] if numbers is not None else None


def _at_row(problem: FieldProblem, row: int) -> FieldProblem:
    return FieldProblem(problem.entity, problem.field, problem.message, row=row)


def _refusal(spec: EntitySpec, exc: PermissionDenied, row: int) -> FieldProblem:
    """A refused row as a problem of that row (``create_many(skip_invalid=True)``)."""
    return FieldProblem(spec.name, exc.details.get("field"), exc.message, row=row)


def _db_value(converter: Any) -> Callable[[Any], Any] | None:
    """How Pony turns a Python value into a parameter for ``converter``'s column (None:
    unchanged), so bulk-written rows read back exactly as Pony-written ones."""
    to_db = None if type(converter).val2dbval is Converter.val2dbval else converter.val2dbval
    to_sql = None if type(converter).py2sql is Converter.py2sql else converter.py2sql
    if to_db is None and to_sql is None:
        return None
    if to_db is None:
        return to_sql
    if to_sql is None:
        return to_db
    return lambda value: to_sql(to_db(value))


class _BulkWriter:
    """Multi-row inserts into one entity's table and the audit table.

    Ids are taken before the insert (SQLite: above the table's AUTOINCREMENT sequence,
    within the write transaction that holds the database; PostgreSQL: from the id
    sequence), so hooks see every record's id before it is written. Values pass through
    Pony's own converters, so bulk-written rows read back exactly as Pony-written ones.
    The row builders are generated once per entity from its metadata (names come only
    from the registry, which admits snake_case identifiers only).
    """

    #: Columns that hold the same value for every record of one batch.
    BATCH_COLUMNS = ("created_at", "updated_at", "created_by", "version", "deleted_at")

    def __init__(self, engine: Engine, spec: EntitySpec) -> None:
        self.engine = engine
        self.entity = spec.name
        provider = engine.db.provider
        self.sqlite = provider.dialect == "SQLite"
        quote = provider.quote_name
        cls = engine.classes[spec.name]
        self.table = cls._table_
        attrs = list(cls._attrs_with_columns_)
        self.convert = {a.name: None if a.reverse else _db_value(a.converters[0]) for a in attrs}
        self.row = self._row_builder(spec, attrs)
        self.changes = self._audit_builder(spec)
        columns = ", ".join(quote(c) for a in attrs for c in a.columns)
        self.insert_sql = self._sql(quote(self.table), columns, len(attrs))
        audit = [a for a in engine.classes["GxAudit"]._attrs_with_columns_ if not a.is_pk]
        self.audit_names = [a.name for a in audit]
        self.audit_convert = {a.name: _db_value(a.converters[0]) for a in audit}
        # the changes are JSON text already: only what the driver needs of it is left
        changes = next(a for a in audit if a.name == "changes").converters[0]
        self.changes_to_sql = None if type(changes).py2sql is Converter.py2sql else changes.py2sql
        self.audit_sql = self._sql(
            quote(engine.classes["GxAudit"]._table_),
            ", ".join(quote(a.columns[0]) for a in audit),
            len(audit),
        )

    def _row_builder(self, spec: EntitySpec, attrs: list[Any]) -> Callable[..., tuple]:
        """``row(full, batch)``: the parameter tuple of one record; ``batch`` holds the
        converted values of :attr:`BATCH_COLUMNS`."""
        money = {f.name for f in spec if f.type == "money"}
        env: dict[str, Any] = {}
        lines, parts = [], []
        for i, attr in enumerate(attrs):
            name, var = attr.name, f"v{i}"
            if name in self.BATCH_COLUMNS:
                parts.append(f"batch[{name!r}]")
                continue
            convert = self.convert[name]
            if name in money:
                lines.append(f"{var} = full[{name!r}]")
                lines.append(f"{var} = None if {var} is None else {var}.amount")
            elif name.endswith(CURRENCY_SUFFIX) and name[: -len(CURRENCY_SUFFIX)] in money:
                source = name[: -len(CURRENCY_SUFFIX)]
                lines.append(f"{var} = full[{source!r}]")
                lines.append(f"{var} = None if {var} is None else {var}.currency")
            else:
                lines.append(f"{var} = full[{name!r}]")
            if convert is not None:
                env[f"c{i}"] = convert
                lines.append(f"{var} = None if {var} is None else c{i}({var})")
            parts.append(var)
        body = "\n    ".join([*lines, f"return ({', '.join(parts)},)"])
        exec(f"def row(full, batch):\n    {body}\n", env)  # noqa: S102 - metadata names only
        return env["row"]

    def _audit_builder(self, spec: EntitySpec) -> Callable[[Mapping[str, Any]], str]:
        """``changes(full)``: the JSON text of a create's audit changes, as
        :meth:`Records._finish` writes them (``{field: [null, to_json(value)]}`` for each
        field with a value; internal ones as ``(changed)``), built without a dict."""
        text = {"string", "text", "email", "phone", "enum"}
        lines = ["parts = []"]
        for f in sorted(spec, key=lambda f: f.name):
            t = f.type
            if f.internal:
                expr = "'\"(changed)\"'"
            elif t in text:
                expr = "text(v)"
            elif t in ("int", "ref"):
                expr = "str(v)"
            elif t == "float":
                expr = "repr(v)"
            elif t == "bool":
                expr = "('true' if v else 'false')"
            elif t == "decimal":
                expr = "'\"' + str(v) + '\"'"
            elif t in ("date", "datetime"):
                expr = "'\"' + v.isoformat() + '\"'"
            elif t == "money":
                expr = (
                    "'{\"amount\":\"' + str(v.amount) + '\",\"currency\":' + text(v.currency) + '}'"
                )
            else:  # json
                expr = "dumps(v, ensure_ascii=False)"
            prefix = json.dumps(f.name) + ":[null,"
            lines.append(f"v = full[{f.name!r}]")
            lines.append(f"if v is not None: parts.append({prefix!r} + {expr} + ']')")
        lines.append("return '{' + ','.join(parts) + '}'")
        env: dict[str, Any] = {"text": encode_basestring, "dumps": json.dumps}
        body = "\n    ".join(lines)
        exec(f"def changes(full):\n    {body}\n", env)  # noqa: S102 - metadata names only
        return env["changes"]

    def _sql(self, table: str, columns: str, count: int) -> str:
        if self.sqlite:
            return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['?'] * count)})"
        return f"INSERT INTO {table} ({columns}) VALUES %s"  # psycopg2 execute_values

    def allocate(self, count: int) -> list[int]:
        """``count`` fresh ids of the table (inside the write transaction)."""
        cursor = self.engine.db.get_connection().cursor()
        if self.sqlite:
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (self.table,))
            row = cursor.fetchone()
            cursor.execute(f'SELECT MAX("id") FROM "{self.table}"')
            last = max(row[0] if row else 0, cursor.fetchone()[0] or 0)
            return list(range(last + 1, last + 1 + count))
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (f'"{self.table}"', count),
        )
        return [row[0] for row in cursor.fetchall()]

    def _run(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        cursor = self.engine.db.get_connection().cursor()
        if self.sqlite:
            cursor.executemany(sql, rows)
        else:
            from psycopg2.extras import execute_values

            execute_values(cursor, sql, rows, page_size=1000)

    def _converted(self, values: Mapping[str, Any], convert: Mapping[str, Any]) -> dict:
        return {
            k: v if v is None or convert[k] is None else convert[k](v) for k, v in values.items()
        }

    def insert(self, records: list[dict[str, Any]]) -> None:
        """Insert ``records`` (full values, ids included) with one statement."""
        first = records[0]
        batch = self._converted({k: first[k] for k in self.BATCH_COLUMNS}, self.convert)
        row = self.row
        self._run(self.insert_sql, [row(full, batch) for full in records])

    def delete(self, ids: list[int]) -> None:
        """Take back rows :meth:`insert` wrote (a row a hook refused) - they were never
        committed, audited or seen by ``record_written``."""
        cursor = self.engine.db.get_connection().cursor()
        mark = "?" if self.sqlite else "%s"
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            cursor.execute(
                f'DELETE FROM "{self.table}" WHERE "id" IN ({", ".join([mark] * len(chunk))})',
                chunk,
            )

    def audit(self, records: list[dict[str, Any]], actor: Actor, at: datetime) -> None:
        """One ``create`` audit event per record, by ``actor`` at ``at``."""
        fixed = self._converted(
            {
                "entity": self.entity,
                "action": "create",
                "actor_id": actor.id,
                "actor": actor.username,
                "at": at,
            },
            self.audit_convert,
        )
        to_sql = self.changes_to_sql
        changes = self.changes
        names = self.audit_names
        rows = []
        for full in records:
            fixed["record_id"] = full["id"]
            fixed["changes"] = changes(full) if to_sql is None else to_sql(changes(full))
            rows.append(tuple([fixed[name] for name in names]))
        self._run(self.audit_sql, rows)


def _check_version(spec: EntitySpec, obj: Any, expected: int | None) -> None:
    if expected is not None and obj.version != expected:
        raise ConflictError(
            f"{spec.name} #{obj.id} is at version {obj.version}, not {expected}: "
            "someone changed it meanwhile; reload it and try again"
        )


def _in_session() -> bool:
    return pony_core.local.db_session is not None


def _is_busy(exc: Exception) -> bool:
    """SQLite's lock timeouts and PostgreSQL's serialization failures and deadlocks."""
    original = getattr(exc, "original_exc", exc)
    code = getattr(original, "pgcode", None)
    return code in ("40001", "40P01") or "locked" in str(exc) or "busy" in str(exc)


def _is_conflict(exc: CommitException) -> bool:
    return any(
        isinstance(inner, OptimisticCheckError | TransactionIntegrityError | IntegrityError)
        for inner in getattr(exc, "exceptions", [])
    ) or isinstance(exc.__cause__, OptimisticCheckError | IntegrityError)
