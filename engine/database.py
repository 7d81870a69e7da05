"""From entity metadata to a bound Pony database.

:func:`build_database` turns a finalised :class:`EntityRegistry` into Pony entity classes
(made with ``type(...)`` so each Engine gets its own ``Database``), adding the base columns
every entity has and the reverse side of every ref. :func:`bind` connects it to SQLite or
PostgreSQL from a URL. :func:`schema_snapshot` is the description of the tables the
metadata asks for, which migrations compare with what an installation recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pony.orm import (
    Database,
    Json,
    Optional,
    PrimaryKey,
    Required,
    Set,
    composite_index,
    composite_key,
)
from pony.orm.dbproviders.sqlite import SQLiteDateConverter, SQLiteDatetimeConverter

from .errors import ConfigError
from .metadata import CURRENCY_SUFFIX, EntityRegistry, EntitySpec, FieldSpec

#: Bump when the snapshot layout changes (not when entities change).
SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``GUANXI_DATABASE_URL``: ``sqlite:///path`` or ``postgres://u:p@h:port/db``."""

    provider: str  # "sqlite" or "postgres"
    path: Path | None = None
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None

    @classmethod
    def parse(cls, url: str, home: Path) -> DatabaseURL:
        if url.startswith("sqlite:"):
            rest = url[len("sqlite:") :].lstrip("/") if url.startswith("sqlite:///") else ""
            if url.startswith("sqlite:////"):
                rest = "/" + url[len("sqlite:////") :]
            if not rest:
                raise ConfigError(
                    f"GUANXI_DATABASE_URL {url!r}: write sqlite:///relative.db "
                    "or sqlite:////absolute/path.db"
                )
            path = Path(rest)
            return cls("sqlite", path=path if path.is_absolute() else (home / path).resolve())
        parts = urlparse(url)
        if parts.scheme in ("postgres", "postgresql"):
            return cls(
                "postgres",
                user=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 5432,
                database=parts.path.lstrip("/") or None,
            )
        raise ConfigError(
            f"GUANXI_DATABASE_URL {url!r} is not understood: use sqlite:///guanxi.db or "
            "postgres://user:password@host:port/database"
        )

    def pony_kwargs(self) -> dict[str, Any]:
        if self.provider == "sqlite":
            assert self.path is not None
            return {"provider": "sqlite", "filename": str(self.path), "create_db": True}
        kwargs: dict[str, Any] = {"provider": "postgres", "host": self.host, "port": self.port}
        for key in ("user", "password", "database"):
            if getattr(self, key):
                kwargs[key] = getattr(self, key)
        return kwargs

    def display(self) -> str:
        """The URL with the password hidden, for messages."""
        if self.provider == "sqlite":
            return f"sqlite:///{self.path}"
        user = f"{self.user}@" if self.user else ""
        return f"postgres://{user}{self.host}:{self.port}/{self.database or ''}"


def currency_column(field_name: str) -> str:
    """The column holding the ISO currency of a money field."""
    return field_name + CURRENCY_SUFFIX


def _value_attrs(f: FieldSpec) -> dict[str, Any]:
    """Pony attributes for one non-ref field. Every column is nullable: ``required`` is
    enforced by the record API, so relaxing it never needs a table rebuild."""
    t = f.type
    if t in ("string", "enum", "email", "phone"):
        return {f.name: Optional(str, f.column_length, nullable=True)}
    if t == "text":
        return {f.name: Optional(str, nullable=True)}
    if t == "int":
        return {f.name: Optional(int, size=64)}
    if t == "decimal":
        return {f.name: Optional(Decimal, precision=f.precision, scale=f.scale)}
    if t == "money":
        return {
            f.name: Optional(Decimal, precision=18, scale=2),
            currency_column(f.name): Optional(str, 3, nullable=True),
        }
    if t == "float":
        return {f.name: Optional(float)}
    if t == "bool":
        return {f.name: Optional(bool)}
    if t == "date":
        return {f.name: Optional(date)}
    if t == "datetime":
        return {f.name: Optional(datetime)}
    if t == "json":
        return {f.name: Optional(Json, nullable=True)}
    raise AssertionError(f"unmapped field type {t}")


def _define_system_entities(db: Database) -> dict[str, type]:
    """Engine tables that are not part of the API: audit trail and installation settings."""

    class GxAudit(db.Entity):
        _table_ = "guanxi_audit"
        id = PrimaryKey(int, auto=True)
        entity = Required(str, 64)
        record_id = Required(int, size=64)
        action = Required(str, 16)
        actor_id = Optional(int, size=64)
        actor = Required(str, 150)
        at = Required(datetime)
        changes = Optional(Json)
        # (entity, record_id) is how a record's audit is read; keep it indexed.
        composite_index(entity, record_id)

    class GxSetting(db.Entity):
        _table_ = "guanxi_setting"
        key = PrimaryKey(str, 64)
        value = Required(str)

    class GxWorkflowEvent(db.Entity):
        """One fired transition (or a record entering its initial state)."""

        _table_ = "guanxi_workflow_event"
        id = PrimaryKey(int, auto=True)
        workflow = Required(str, 100)
        workflow_version = Required(str, 32)
        entity = Required(str, 64)
        record_id = Required(int, size=64)
        trigger = Optional(str, 100, nullable=True)
        from_state = Optional(str, 100, nullable=True)
        to_state = Required(str, 100)
        actor_id = Optional(int, size=64)
        actor = Required(str, 150)
        at = Required(datetime)
        payload = Optional(Json, nullable=True)
        composite_index(entity, record_id)

    class GxTimer(db.Entity):
        """A state timeout due at ``due_at``; fired once by a worker (status moves on)."""

        _table_ = "guanxi_timer"
        id = PrimaryKey(int, auto=True)
        workflow = Required(str, 100)
        entity = Required(str, 64)
        record_id = Required(int, size=64)
        state = Required(str, 100)
        due_at = Required(datetime, index=True)
        status = Required(str, 16, default="pending", index=True)
        done_at = Optional(datetime)
        note = Optional(str, 500, nullable=True)
        composite_index(entity, record_id)

    class GxOutbox(db.Entity):
        """A message to deliver after commit, at least once, keyed for idempotency."""

        _table_ = "guanxi_outbox"
        id = PrimaryKey(int, auto=True)
        channel = Required(str, 64)
        key = Required(str, 200, unique=True)
        payload = Optional(Json, nullable=True)
        status = Required(str, 16, default="pending", index=True)
        attempts = Required(int, default=0)
        next_attempt_at = Required(datetime)
        last_error = Optional(str, 1000, nullable=True)
        created_at = Required(datetime)
        delivered_at = Optional(datetime)

    class GxIdempotency(db.Entity):
        """The first result of an operation sent with an idempotency key."""

        _table_ = "guanxi_idempotency"
        id = PrimaryKey(int, auto=True)
        scope = Required(str, 200)  # actor and operation
        key = Required(str, 200)
        request_hash = Required(str, 64)
        result = Optional(Json, nullable=True)
        created_at = Required(datetime)
        composite_key(scope, key)

    class GxJobRun(db.Entity):
        """A periodic job's claim on one period: the unique key makes it run once."""

        _table_ = "guanxi_job_run"
        id = PrimaryKey(int, auto=True)
        name = Required(str, 100)
        period = Required(int, size=64)
        started_at = Required(datetime)
        composite_key(name, period)

    class GxNotification(db.Entity):
        """A message in a user's in-app inbox (the built-in channel of ``notify``)."""

        _table_ = "guanxi_notification"
        id = PrimaryKey(int, auto=True)
        user_id = Required(int, size=64, index=True)
        template = Required(str, 200)
        payload = Optional(Json, nullable=True)
        key = Required(str, 200, unique=True)
        created_at = Required(datetime)
        read_at = Optional(datetime)

    class GxToken(db.Entity):
        """An API token; only its SHA-256 is stored, never the token itself."""

        _table_ = "guanxi_token"
        id = PrimaryKey(int, auto=True)
        user_id = Required(int, size=64, index=True)
        token_hash = Required(str, 64, unique=True)
        created_at = Required(datetime)
        expires_at = Required(datetime)
        last_used_at = Optional(datetime)
        revoked_at = Optional(datetime)
        label = Optional(str, 200, nullable=True)

    class GxLoginFailure(db.Entity):
        """Failed logins of one key (``user:<name>``, ``addr:<ip>``) in the current window."""

        _table_ = "guanxi_login_failure"
        key = PrimaryKey(str, 200)
        count = Required(int, default=0)
        window_start = Required(datetime, index=True)
        locked_until = Optional(datetime)

    class GxMember(db.Entity):
        """A user sharing an owned record besides its owner (``access`` read or edit)."""

        _table_ = "guanxi_member"
        id = PrimaryKey(int, auto=True)
        entity = Required(str, 64)
        record_id = Required(int, size=64)
        user_id = Required(int, size=64)
        access = Required(str, 8)
        added_at = Required(datetime)
        added_by = Optional(int, size=64)
        composite_key(entity, record_id, user_id)
        # read scopes ask "which records of this entity is the user a member of"
        composite_index(entity, user_id)

    return {
        "GxAudit": GxAudit,
        "GxJobRun": GxJobRun,
        "GxNotification": GxNotification,
        "GxSetting": GxSetting,
        "GxWorkflowEvent": GxWorkflowEvent,
        "GxTimer": GxTimer,
        "GxOutbox": GxOutbox,
        "GxIdempotency": GxIdempotency,
        "GxToken": GxToken,
        "GxLoginFailure": GxLoginFailure,
        "GxMember": GxMember,
    }


def build_database(registry: EntityRegistry) -> tuple[Database, dict[str, type]]:
    """A fresh, unbound Pony ``Database`` with one class per entity of ``registry``.

    Returns the database and the classes by entity name (system classes included under
    their ``Gx*`` names). Must be called once per Engine: Pony classes belong to one
    Database.
    """
    db = Database()
    classes = _define_system_entities(db)
    reverse_sets: dict[str, dict[str, Any]] = {spec.name: {} for spec in registry}
    for spec in registry:
        for rname, rev in spec.reverses.items():
            reverse_sets[spec.name][rname] = Set(rev.source, reverse=rev.field)
    for spec in registry:
        attrs: dict[str, Any] = {
            "_table_": spec.table,
            "id": PrimaryKey(int, auto=True, size=64),
            "created_at": Required(datetime),
            "updated_at": Required(datetime),
            "created_by": Optional(int, size=64),
            "version": Required(int, default=1),
            "deleted_at": Optional(datetime),
        }
        for f in spec:
            if f.type == "ref":
                attrs[f.name] = Optional(f.to, reverse=f.reverse or spec.plural)
            else:
                attrs.update(_value_attrs(f))
        attrs.update(reverse_sets[spec.name])
        classes[spec.name] = type(spec.name, (db.Entity,), attrs)
    return db, classes


def bind(db: Database, url: DatabaseURL) -> None:
    """Connect ``db``; on SQLite turn on WAL, foreign keys, durable commits, a busy wait."""
    if url.provider == "sqlite":
        assert url.path is not None
        url.path.parent.mkdir(parents=True, exist_ok=True)

        @db.on_connect(provider="sqlite")
        def _sqlite_pragmas(_db: Database, connection: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = " + os.environ.get("GUANXI_SQLITE_SYNC", "FULL"))
            cursor.execute("PRAGMA busy_timeout = 10000")

    try:
        db.bind(**url.pony_kwargs())
    except Exception as exc:  # the driver's own message says what is wrong
        raise ConfigError(f"cannot open the database {url.display()}: {exc}") from exc
    if url.provider == "sqlite":  # before the mapping, which picks the converters
        faster = {datetime: _SQLiteDatetime, date: _SQLiteDate}
        db.provider.converter_classes = [
            (kind, faster.get(kind, converter)) for kind, converter in db.provider.converter_classes
        ]


class _SQLiteDatetime(SQLiteDatetimeConverter):
    """Pony's SQLite datetime converter, reading its own text (``2027-03-01 09:00:00`` and
    ``.123456``) with ``datetime.fromisoformat`` rather than ``time.strptime``: the same
    values, some ten times faster - a page of 100 records reads 200 of them."""

    def sql2py(self, val: Any) -> Any:
        if type(val) is str and len(val) in (19, 26) and val[10] == " ":
            try:
                return datetime.fromisoformat(val)
            except ValueError:
                pass
        return super().sql2py(val)


class _SQLiteDate(SQLiteDateConverter):
    """Pony's SQLite date converter with ``isoformat`` to write and ``date.fromisoformat``
    to read: several times faster, and right for years before 1000, which Pony writes
    unpadded (``strftime("%Y")``: ``999-05-01``) and then cannot read back."""

    def sql2py(self, val: Any) -> Any:
        if type(val) is str:
            try:
                if len(val) >= 10:
                    return date.fromisoformat(val[:10])
                year, month, day = val.split("-")  # written unpadded before
                return date(int(year), int(month), int(day))
            except ValueError:
                pass
        return super().sql2py(val)

    def py2sql(self, val: Any) -> Any:
        return val.isoformat()


def field_snapshot(f: FieldSpec) -> dict[str, Any]:
    """What the table needs to know about one field (validation-only options left out)."""
    return {
        "type": f.type,
        "nullable": not f.required,
        "length": f.column_length,
        "precision": f.precision if f.type == "decimal" else None,
        "scale": f.scale if f.type == "decimal" else None,
        "unique": f.unique,
        "index": f.indexed,
        "ref": f.to,
        "default": _json_default(f.default),
    }


def _json_default(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def entity_snapshot(spec: EntitySpec) -> dict[str, Any]:
    return {"table": spec.table, "fields": {f.name: field_snapshot(f) for f in spec}}


def schema_snapshot(registry: EntityRegistry) -> dict[str, Any]:
    """The schema the metadata asks for, as JSON-ready data (see migrations)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "entities": {spec.name: entity_snapshot(spec) for spec in registry},
    }
