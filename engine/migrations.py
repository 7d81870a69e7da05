"""Additive schema migrations: Pony has none, so the engine keeps its own record.

Every applied schema is recorded as a JSON snapshot (see :func:`database.schema_snapshot`) in
the table ``guanxi_schema``, one row per migration, newest last. At start-up
:func:`apply_migration` compares the newest record with what the metadata asks for and
applies the additive differences (new entity, new optional or defaulted field, longer
text, relaxed ``required``, added or removed indexes) in one transaction under an
installation-wide lock. Anything destructive (type change, shorter text, removed field,
new required field without default, optional -> required) is refused as a whole with a
:class:`MigrationError` that lists every difference, and nothing is changed.

Entities that are recorded but no longer declared (a plugin was disabled) are *retained*:
their tables are left alone and their snapshot carried into every new record, so enabling
the plugin again compares against what its tables really look like.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pony.orm import Database, db_session

from .database import SNAPSHOT_FORMAT, currency_column, schema_snapshot
from .errors import MigrationError
from .metadata import EntityRegistry, FieldSpec

#: The table that records every applied snapshot (id, applied_at, snapshot JSON).
SCHEMA_TABLE = "guanxi_schema"
#: Key of the PostgreSQL advisory lock every guanxi process takes before touching the
#: schema; any fixed bigint works as long as all processes agree ("guanxi" in ASCII).
SCHEMA_LOCK_KEY = int.from_bytes(b"guanxi", "big")

Rows = list[tuple[Any, ...]]
Fetch = Callable[[str], Rows]


@dataclass(frozen=True)
class Change:
    """One additive change; ``kind`` is one of :data:`CHANGE_KINDS`."""

    entity: str
    field: str | None
    kind: str
    description: str


CHANGE_KINDS = (
    "create_table",
    "add_column",
    "widen_column",
    "relax_required",
    "add_index",
    "add_unique",
    "drop_index",
    "drop_unique",
)


@dataclass(frozen=True)
class MigrationPlan:
    """What start-up has to do to bring the database to the metadata.

    ``changes`` are applied by :func:`apply_migration`; ``refused`` lists destructive
    differences (``Entity.field: old -> new``), any of which stops the whole migration;
    ``retained`` names recorded entities that are no longer declared; ``fresh`` is True
    when nothing is recorded and none of the entity tables exist.
    """

    changes: tuple[Change, ...]
    refused: tuple[str, ...]
    retained: tuple[str, ...]
    fresh: bool

    @property
    def pending(self) -> bool:
        return bool(self.changes)


def _is_sqlite(db: Database) -> bool:
    return db.provider.dialect == "SQLite"


def _q(name: str) -> str:
    """Quote an identifier; works on SQLite and PostgreSQL (``order`` is a keyword)."""
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- reading the recorded state ---------------------------------------------------------


def _table_names(fetch: Fetch, sqlite: bool) -> set[str]:
    if sqlite:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
    return {row[0] for row in fetch(sql)}


def _recorded(fetch: Fetch, tables: set[str]) -> dict[str, Any] | None:
    """The newest recorded snapshot, or None when nothing was ever recorded."""
    if SCHEMA_TABLE not in tables:
        return None
    rows = fetch(f"SELECT snapshot FROM {_q(SCHEMA_TABLE)} ORDER BY id DESC LIMIT 1")
    return json.loads(rows[0][0]) if rows else None


def _plan(
    fetch: Fetch, sqlite: bool, registry: EntityRegistry, engine_tables: Sequence[str] = ()
) -> MigrationPlan:
    tables = _table_names(fetch, sqlite)
    wanted = schema_snapshot(registry)["entities"]
    try:
        recorded = _recorded(fetch, tables)
    except ValueError as exc:
        return MigrationPlan(
            (), (f"the newest row of {SCHEMA_TABLE} is not JSON: {exc}",), (), False
        )
    if recorded is None:
        existing = sorted(e["table"] for e in wanted.values() if e["table"] in tables)
        if existing:
            return MigrationPlan(
                (),
                (
                    f"the database already has the table(s) {', '.join(existing)} but no record "
                    f"in {SCHEMA_TABLE}: it was not set up by guanxi (or the record was removed); "
                    "use an empty database or restore the record",
                ),
                (),
                False,
            )
        creates = tuple(_create(name, e["table"]) for name, e in wanted.items())
        return MigrationPlan(creates, (), (), True)
    if recorded.get("format") != SNAPSHOT_FORMAT:
        return MigrationPlan(
            (),
            (
                f"{SCHEMA_TABLE} records snapshot format {recorded.get('format')!r}, this guanxi "
                f"reads format {SNAPSHOT_FORMAT}: use the guanxi version that set up the database",
            ),
            (),
            False,
        )
    old_entities: dict[str, Any] = recorded.get("entities", {})
    changes: list[Change] = []
    refused: list[str] = []
    for name, entity in wanted.items():
        old = old_entities.get(name)
        if old is None:
            if entity["table"] in tables:
                refused.append(
                    f"{name}: new entity, but its table {entity['table']} already "
                    "exists without a record: (unrecorded table) -> new table"
                )
            else:
                changes.append(_create(name, entity["table"]))
        else:
            _diff_entity(name, old["fields"], entity["fields"], changes, refused)
    # The engine's own tables (audit, history, timers...) are not in the snapshot: a newer
    # guanxi may bring a new one, which is created like a new entity.
    for table in engine_tables:
        if table not in tables:
            changes.append(Change(table, None, "create_table", f"create engine table {table}"))
    retained = tuple(sorted(set(old_entities) - set(wanted)))
    return MigrationPlan(tuple(changes), tuple(refused), retained, False)


def _engine_tables(db: Database) -> list[str]:
    return sorted(
        name for name in db.schema.tables if name.startswith("guanxi_") and name != SCHEMA_TABLE
    )


def _create(entity: str, table: str) -> Change:
    return Change(entity, None, "create_table", f"create table {table} for {entity}")


def _describe(f: dict[str, Any]) -> str:
    """``string, max 64, default 'x'`` — the column as a person would name it."""
    parts = [f"ref to {f['ref']}" if f["type"] == "ref" else f["type"]]
    if f["length"]:
        parts.append(f"max {f['length']}")
    if f["precision"] is not None:
        parts.append(f"precision {f['precision']}, scale {f['scale']}")
    if not f["nullable"]:
        parts.append("required")
    if f["default"] is not None:
        parts.append(f"default {f['default']!r}")
    return ", ".join(parts)


def _longer(first: int | None, second: int | None) -> bool:
    """Both are lengths and ``second`` is the longer one."""
    return first is not None and second is not None and second > first


def _diff_entity(
    entity: str,
    old_fields: dict[str, Any],
    new_fields: dict[str, Any],
    changes: list[Change],
    refused: list[str],
) -> None:
    """Append the changes and refusals for one entity recorded before and declared now."""

    def change(name: str, kind: str, text: str) -> None:
        changes.append(Change(entity, name, kind, text))

    for name, new in new_fields.items():
        where = f"{entity}.{name}"
        old = old_fields.get(name)
        if old is None:
            if not new["nullable"] and new["default"] is None:
                # Existing records would break `required` the moment they are saved again.
                refused.append(
                    f"{where}: (none) -> new required field without a default "
                    f"({_describe(new)}); make it optional or give it a default"
                )
                continue
            change(name, "add_column", f"add column {where} ({_describe(new)})")
            old = {**new, "unique": False, "index": False}
        elif old["type"] != new["type"]:
            refused.append(f"{where}: type {old['type']} -> {new['type']}")
            continue
        elif old["ref"] != new["ref"]:
            refused.append(f"{where}: ref target {old['ref']} -> {new['ref']}")
            continue
        elif (old["precision"], old["scale"]) != (new["precision"], new["scale"]):
            refused.append(
                f"{where}: precision/scale {old['precision']},{old['scale']} -> "
                f"{new['precision']},{new['scale']}"
            )
            continue
        elif _longer(new["length"], old["length"]):
            refused.append(
                f"{where}: max length {old['length']} -> {new['length']} (shorter; "
                "longer values already stored would not fit)"
            )
            continue
        elif old["nullable"] and not new["nullable"]:
            refused.append(f"{where}: optional -> required (existing records may be empty)")
            continue
        else:
            if _longer(old["length"], new["length"]):
                change(
                    name,
                    "widen_column",
                    f"widen {where} from {old['length']} to {new['length']} characters",
                )
            if not old["nullable"] and new["nullable"]:
                change(name, "relax_required", f"make {where} optional")
        for key, kind, label in (
            ("unique", "unique", "unique index (non-deleted records)"),
            ("index", "index", "index"),
        ):
            # Pony indexes every ref column itself (idx_<table>__<column>): no second one.
            if new["type"] == "ref" and kind == "index":
                continue
            if new[key] and not old[key]:
                change(name, f"add_{kind}", f"add {label} on {where}")
            elif old[key] and not new[key]:
                change(name, f"drop_{kind}", f"drop {label} on {where}")
    for name, old in old_fields.items():
        if name not in new_fields:
            refused.append(f"{entity}.{name}: {_describe(old)} -> removed (its column holds data)")


# -- applying -----------------------------------------------------------------------------


def plan_migration(db: Database, registry: EntityRegistry) -> MigrationPlan:
    """Compare the newest recorded snapshot with ``registry``; reads only, takes no lock.

    ``db`` must be bound and mapped. The answer may be stale by the time it is acted on:
    :func:`apply_migration` plans again under the lock.
    """

    def fetch(sql: str) -> Rows:
        # db.select runs in autocommit mode, so planning never takes SQLite's write lock.
        return [row if isinstance(row, tuple) else (row,) for row in db.select(sql)]

    with db_session:
        return _plan(fetch, _is_sqlite(db), registry, _engine_tables(db))


@contextmanager
def schema_lock(db: Database) -> Iterator[Any]:
    """Hold the installation-wide schema lock inside one DDL transaction; yield its
    DB-API connection. Commits when the body returns, rolls back when it raises.

    A second process (or thread with its own Database) entering the lock waits until the
    first commits. Must not be used inside a ``db_session``: Pony refuses to nest DDL
    sessions in other sessions.
    """
    with db_session(ddl=True):
        # On SQLite this runs BEGIN IMMEDIATE: the single-writer lock, which in WAL mode is
        # the same as EXCLUSIVE; others wait for it (busy_timeout, see database.bind).
        connection = db.get_connection()
        if not _is_sqlite(db):
            # Transaction-scoped: released by the commit or rollback, never leaked.
            connection.cursor().execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
        yield connection


def apply_migration(db: Database, registry: EntityRegistry) -> MigrationPlan:
    """Bring the database to ``registry`` and record the new snapshot; return the plan.

    Plans again under :func:`schema_lock`. Raises :class:`MigrationError` (changing
    nothing) when anything is refused, or when a new unique index meets duplicate values.
    Otherwise every change, the missing tables (Pony's own create step, which skips
    existing tables, indexes and foreign keys), the partial unique and plain indexes of
    every declared entity and the new record are committed in one transaction.
    """
    sqlite = _is_sqlite(db)
    with schema_lock(db) as connection:
        cursor = connection.cursor()

        def fetch(sql: str) -> Rows:
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]

        if sqlite:
            ddl = (
                f"CREATE TABLE IF NOT EXISTS {_q(SCHEMA_TABLE)} (id INTEGER PRIMARY KEY "
                "AUTOINCREMENT, applied_at TEXT NOT NULL, snapshot TEXT NOT NULL)"
            )
        else:
            ddl = (
                f"CREATE TABLE IF NOT EXISTS {_q(SCHEMA_TABLE)} (id BIGSERIAL PRIMARY KEY, "
                "applied_at TIMESTAMPTZ NOT NULL, snapshot TEXT NOT NULL)"
            )
        cursor.execute(ddl)
        plan = _plan(fetch, sqlite, registry, _engine_tables(db))
        if plan.refused:
            raise MigrationError(
                "The database schema cannot follow the metadata; nothing was changed:\n"
                + "\n".join(f"  - {r}" for r in plan.refused),
                differences=list(plan.refused),
            )
        for change in plan.changes:
            if change.kind == "add_column":
                _add_column(db, cursor, registry, change)
            elif change.kind == "widen_column" and not sqlite:
                # SQLite ignores VARCHAR lengths; only the record changes there.
                table, column = _column(db, registry, change.entity, str(change.field))
                cursor.execute(
                    f"ALTER TABLE {_q(table)} ALTER COLUMN {_q(column.name)} TYPE {column.sql_type}"
                )
            elif change.kind in ("drop_index", "drop_unique"):
                prefix = "uq" if change.kind == "drop_unique" else "ix"
                table = registry[change.entity].table
                cursor.execute(f"DROP INDEX IF EXISTS {_q(f'{prefix}_{table}_{change.field}')}")
        # Database.create_tables() is itself a DDL db_session and refuses to run inside
        # ours, so call the schema step it wraps, on our connection and transaction.
        db.schema.create_tables(db.provider, connection)
        _create_indexes(db, cursor, registry)
        if plan.changes or plan.fresh:
            _record(cursor, sqlite, registry, plan, fetch)
    return plan


def _column(db: Database, registry: EntityRegistry, entity: str, name: str) -> tuple[str, Any]:
    table = registry[entity].table
    return table, db.schema.tables[table].column_dict[name]


def _add_column(db: Database, cursor: Any, registry: EntityRegistry, change: Change) -> None:
    """ADD COLUMN with Pony's SQL type (both columns of a money field), filling existing
    rows with the field's default. The column stays nullable and without a lasting SQL
    DEFAULT, so a migrated table behaves exactly like a freshly created one."""
    spec = registry[change.entity].fields[str(change.field)]
    names = [spec.name] + ([currency_column(spec.name)] if spec.type == "money" else [])
    sqlite = _is_sqlite(db)
    for name in names:
        table, column = _column(db, registry, change.entity, name)
        sql = f"ALTER TABLE {_q(table)} ADD COLUMN {_q(name)} {column.sql_type}"
        fk = db.schema.tables[table].foreign_keys.get((column,))
        # SQLite can only get a foreign key inline. PostgreSQL gets Pony's named constraint
        # from the create step below, after any new target table exists (same transaction).
        if fk is not None and not db.schema.named_foreign_keys:
            sql += f" REFERENCES {_q(fk.parent_table.name)} ({_q(fk.parent_columns[0].name)})"
            if fk.on_delete:
                sql += f" ON DELETE {fk.on_delete}"
        literal = _literal(spec, sqlite) if name == spec.name else None
        if literal is None:
            cursor.execute(sql)
        elif sqlite:
            # SQLite cannot drop a column default later; fill the rows instead.
            cursor.execute(sql)
            cursor.execute(f"UPDATE {_q(table)} SET {_q(name)} = {literal}")
        else:
            # PostgreSQL stores a constant ADD COLUMN default without rewriting the table;
            # dropping it afterwards keeps the value in existing rows only.
            cursor.execute(f"{sql} DEFAULT {literal}")
            cursor.execute(f"ALTER TABLE {_q(table)} ALTER COLUMN {_q(name)} DROP DEFAULT")


def _literal(spec: FieldSpec, sqlite: bool) -> str | None:
    """The field's default as an SQL literal, or None when there is no fixed value."""
    value, t = spec.default, spec.type
    try:
        if value is None:
            return None
        if t == "bool":
            if not isinstance(value, bool):
                return None
            return ("1" if value else "0") if sqlite else ("TRUE" if value else "FALSE")
        if t == "int":
            return str(int(value)) if not isinstance(value, bool) else None
        if t == "float":
            number = float(value)
            return repr(number) if math.isfinite(number) else None
        if t == "decimal":
            number = Decimal(str(value))
            return format(number, "f") if number.is_finite() else None
        if t == "date":
            day = value if isinstance(value, date) else date.fromisoformat(str(value))
            return _text(day.isoformat())
        if t == "datetime":
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            return _text(moment.isoformat(sep=" "))
        if t == "json":
            return _text(json.dumps(value, ensure_ascii=False))
        return _text(str(value))
    except (ValueError, TypeError, InvalidOperation):
        # e.g. a dynamic default such as "today": existing rows stay empty.
        return None


def _create_indexes(db: Database, cursor: Any, registry: EntityRegistry) -> None:
    """Create the partial unique and plain indexes of every declared entity (idempotent)."""
    for spec in registry:
        for f in spec:
            if f.unique:
                name = f"uq_{spec.table}_{f.name}"
                try:
                    # Unique among live records only: a soft-deleted one frees its value.
                    cursor.execute(
                        f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(name)} ON "
                        f"{_q(spec.table)} ({_q(f.name)}) WHERE deleted_at IS NULL"
                    )
                except db.provider.dbapi_module.IntegrityError as exc:
                    raise MigrationError(
                        f"cannot make {spec.name}.{f.name} unique; nothing was changed:\n"
                        f"  - {spec.name}.{f.name}: not unique -> unique, but existing "
                        f"records repeat a value ({exc})",
                        differences=[f"{spec.name}.{f.name}: not unique -> unique"],
                    ) from exc
            if f.indexed and not f.is_ref:
                cursor.execute(
                    f"CREATE INDEX IF NOT EXISTS {_q(f'ix_{spec.table}_{f.name}')} "
                    f"ON {_q(spec.table)} ({_q(f.name)})"
                )


def _record(
    cursor: Any, sqlite: bool, registry: EntityRegistry, plan: MigrationPlan, fetch: Fetch
) -> None:
    """Insert the new snapshot; retained entities keep their recorded description."""
    snapshot = schema_snapshot(registry)
    if plan.retained:
        old = _recorded(fetch, {SCHEMA_TABLE}) or {"entities": {}}
        snapshot["entities"].update({n: old["entities"][n] for n in plan.retained})
    now = datetime.now(UTC)
    mark = "?" if sqlite else "%s"
    cursor.execute(
        f"INSERT INTO {_q(SCHEMA_TABLE)} (applied_at, snapshot) VALUES ({mark}, {mark})",
        (now.isoformat() if sqlite else now, json.dumps(snapshot, ensure_ascii=False)),
    )


__all__ = [
    "CHANGE_KINDS",
    "SCHEMA_LOCK_KEY",
    "SCHEMA_TABLE",
    "Change",
    "MigrationPlan",
    "apply_migration",
    "plan_migration",
    "schema_lock",
]
