"""Tests for guanxi.engine.migrations: additive changes applied, destructive ones refused.

Every test runs on SQLite; with GUANXI_TEST_POSTGRES_URL set (for example
postgres://postgres@127.0.0.1:5432/postgres) it also runs on a fresh PostgreSQL database
made for the test. Each "start" builds a new Pony Database, as a restarted process would.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest
from pony.orm import Database, TransactionIntegrityError, db_session

from guanxi.engine.database import DatabaseURL, bind, build_database
from guanxi.engine.errors import MigrationError
from guanxi.engine.metadata import EntityRegistry
from guanxi.engine.migrations import (
    SCHEMA_TABLE,
    MigrationPlan,
    apply_migration,
    plan_migration,
)

POSTGRES_URL = os.environ.get("GUANXI_TEST_POSTGRES_URL")
USER = {"name": "User", "fields": {"username": {"type": "string", "max_length": 150}}}


def fair(**fields: Any) -> dict[str, Any]:
    """A ``Fair`` entity (table ``fair``) with a name and the given extra fields."""
    return {"name": "Fair", "owned": True, "fields": {"name": "string", **fields}}


def make_registry(*entities: dict[str, Any]) -> EntityRegistry:
    registry = EntityRegistry()
    registry.declare(USER, "test")
    for entity in entities:
        registry.declare(entity, "test")
    return registry.finalize()


@dataclass
class Started:
    db: Database
    classes: dict[str, type]
    registry: EntityRegistry

    def create(self, entity: str, **values: Any) -> int:
        now = datetime.now()
        with db_session:
            record = self.classes[entity](created_at=now, updated_at=now, **values)
            record.flush()
            return int(record.id)

    def get(self, entity: str, record_id: int, name: str) -> Any:
        with db_session:
            return getattr(self.classes[entity][record_id], name)


@dataclass
class Backend:
    """One empty database and raw access to it that does not go through Pony."""

    kind: str
    url: str
    home: Path
    databases: list[Database] = field(default_factory=list)

    def start(self, *entities: dict[str, Any]) -> Started:
        """Build, bind and map a fresh Pony Database; tables are left to migrations."""
        registry = make_registry(*entities)
        db, classes = build_database(registry)
        bind(db, DatabaseURL.parse(self.url, self.home))
        db.generate_mapping(create_tables=False, check_tables=False)
        self.databases.append(db)
        return Started(db, classes, registry)

    def migrate(self, *entities: dict[str, Any]) -> tuple[Started, MigrationPlan]:
        started = self.start(*entities)
        return started, apply_migration(started.db, started.registry)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            connection: Any = sqlite3.connect(self.home / "guanxi.db")
        else:
            connection = psycopg2.connect(self.url)
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            connection.close()

    def tables(self) -> set[str]:
        if self.kind == "sqlite":
            return {r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type='table'")}
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        return {r[0] for r in self.rows(sql)}

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> SQL type as the database reports it (with length)."""
        if self.kind == "sqlite":
            return {r[1]: r[2] for r in self.rows(f'PRAGMA table_info("{table}")')}
        sql = (
            "SELECT column_name, data_type, character_maximum_length FROM "
            f"information_schema.columns WHERE table_name = '{table}'"
        )
        return {
            name: f"{kind}({length})" if length else kind for name, kind, length in self.rows(sql)
        }

    def indexes(self, table: str) -> set[str]:
        if self.kind == "sqlite":
            sql = f"SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='{table}'"
        else:
            sql = f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'"
        return {r[0] for r in self.rows(sql)}

    def foreign_keys(self, table: str) -> set[tuple[str, str]]:
        """(column, referenced table) of every foreign key of ``table``."""
        if self.kind == "sqlite":
            return {(r[3], r[2]) for r in self.rows(f'PRAGMA foreign_key_list("{table}")')}
        sql = (
            "SELECT a.attname, c.confrelid::regclass::text FROM pg_constraint c JOIN "
            "pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
            f"WHERE c.contype = 'f' AND c.conrelid = '\"{table}\"'::regclass"
        )
        return {(column, target.strip('"')) for column, target in self.rows(sql)}

    def snapshots(self) -> list[dict[str, Any]]:
        """Every recorded snapshot, oldest first."""
        rows = self.rows(f'SELECT snapshot FROM "{SCHEMA_TABLE}" ORDER BY id')
        return [json.loads(r[0]) for r in rows]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path}/guanxi.db", tmp_path)
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not tested: set GUANXI_TEST_POSTGRES_URL=postgres://...")
    name = "gx_test_" + secrets.token_hex(6)
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    try:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        url = urlunparse(urlparse(POSTGRES_URL)._replace(path="/" + name))
        backend = Backend("postgres", url, tmp_path)
        yield backend
        for db in backend.databases:
            db.disconnect()
        # Threads keep their own Pony connections; FORCE ends them (PostgreSQL 13+).
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.close()


def test_fresh_install_creates_tables_and_records_snapshot(backend: Backend) -> None:
    started = backend.start(fair(code={"type": "string", "unique": True}))
    planned = plan_migration(started.db, started.registry)
    assert planned.fresh and planned.pending and not planned.refused
    assert {c.kind for c in planned.changes} == {"create_table"}
    assert not backend.tables() & {"fair", SCHEMA_TABLE}, "planning changed nothing"

    applied = apply_migration(started.db, started.registry)

    assert applied.fresh
    assert {"user", "fair", "guanxi_audit", "guanxi_setting", SCHEMA_TABLE} <= backend.tables()
    [snapshot] = backend.snapshots()
    assert set(snapshot["entities"]) == {"User", "Fair"}
    assert "uq_fair_code" in backend.indexes("fair")
    started.db.check_tables()
    record_id = started.create("Fair", name="Canton Fair", code="CF")
    assert started.get("Fair", record_id, "code") == "CF"


def test_second_start_with_same_metadata_plans_nothing(backend: Backend) -> None:
    backend.migrate(fair())
    started = backend.start(fair())
    planned = plan_migration(started.db, started.registry)
    assert planned == MigrationPlan((), (), (), False)
    assert not apply_migration(started.db, started.registry).pending
    assert len(backend.snapshots()) == 1


def test_new_optional_field_adds_column_and_keeps_rows(backend: Backend) -> None:
    first, _ = backend.migrate(fair())
    record_id = first.create("Fair", name="Canton Fair")

    second, plan = backend.migrate(fair(city={"type": "string", "max_length": 64}, extra="json"))

    assert [(c.kind, c.field) for c in plan.changes] == [
        ("add_column", "city"),
        ("add_column", "extra"),
    ]
    assert plan.changes[0].description == "add column Fair.city (string, max 64)"
    assert {"city", "extra"} <= set(backend.columns("fair"))
    second.db.check_tables()
    assert second.get("Fair", record_id, "name") == "Canton Fair"
    assert second.get("Fair", record_id, "city") is None
    assert second.get("Fair", record_id, "extra") is None
    assert len(backend.snapshots()) == 2


def test_new_ref_and_money_fields_add_their_columns(backend: Backend) -> None:
    first, _ = backend.migrate(fair())
    record_id = first.create("Fair", name="Canton Fair")

    second, _ = backend.migrate(fair(organiser={"type": "ref", "to": "User"}, fee="money"))

    assert {"organiser", "fee", "fee_currency"} <= set(backend.columns("fair"))
    assert "idx_fair__organiser" in backend.indexes("fair")
    assert ("organiser", "user") in backend.foreign_keys("fair")
    user_id = second.create("User", username="li")
    with db_session:
        record = second.classes["Fair"][record_id]
        record.organiser = second.classes["User"][user_id]
        record.fee, record.fee_currency = 100, "CNY"
    with db_session:
        assert second.classes["User"][user_id].fairs.count() == 1
    assert third_start_plans_nothing(
        backend, fair(organiser={"type": "ref", "to": "User"}, fee="money")
    )


def third_start_plans_nothing(backend: Backend, *entities: dict[str, Any]) -> bool:
    started = backend.start(*entities)
    return not plan_migration(started.db, started.registry).pending


def test_new_field_with_default_fills_existing_rows(backend: Backend) -> None:
    first, _ = backend.migrate(fair())
    record_id = first.create("Fair", name="Canton Fair")

    second, _ = backend.migrate(
        fair(
            status={"type": "enum", "choices": ["planned", "done"], "default": "planned"},
            stands={"type": "int", "default": 5},
            public={"type": "bool", "default": True},
            note={"type": "string", "default": "it's new"},
        )
    )

    assert second.get("Fair", record_id, "status") == "planned"
    assert second.get("Fair", record_id, "stands") == 5
    assert second.get("Fair", record_id, "public") is True
    assert second.get("Fair", record_id, "note") == "it's new"


def test_default_is_not_left_as_column_default(backend: Backend) -> None:
    backend.migrate(fair())
    second, _ = backend.migrate(fair(stands={"type": "int", "default": 5}))
    # A fresh install has no SQL default; a migrated one must not either.
    record_id = second.create("Fair", name="Later")
    assert second.get("Fair", record_id, "stands") is None


def test_new_entity_creates_table(backend: Backend) -> None:
    backend.migrate(fair())
    booth = {"name": "Booth", "fields": {"fair": {"type": "ref", "to": "Fair"}, "number": "int"}}
    second, plan = backend.migrate(fair(), booth)
    assert [(c.kind, c.entity) for c in plan.changes] == [("create_table", "Booth")]
    assert "booth" in backend.tables()
    second.db.check_tables()
    fair_id = second.create("Fair", name="Canton Fair")
    booth_id = second.create("Booth", fair=fair_id, number=7)
    assert second.get("Booth", booth_id, "number") == 7


def test_new_ref_to_new_entity_in_one_migration(backend: Backend) -> None:
    backend.migrate(fair())
    hall = {"name": "Hall", "fields": {"label": "string"}}
    second, plan = backend.migrate(fair(hall={"type": "ref", "to": "Hall"}), hall)
    assert sorted(c.kind for c in plan.changes) == ["add_column", "create_table"]
    assert backend.foreign_keys("fair") >= {("hall", "hall"), ("owner", "user")}
    hall_id = second.create("Hall", label="A")
    fair_id = second.create("Fair", name="Canton Fair", hall=hall_id)
    with db_session:
        assert second.classes["Fair"][fair_id].hall.label == "A"


def test_new_index_is_created(backend: Backend) -> None:
    backend.migrate(fair(city="string"))
    _, plan = backend.migrate(fair(city={"type": "string", "indexed": True}))
    assert [(c.kind, c.field) for c in plan.changes] == [("add_index", "city")]
    assert "ix_fair_city" in backend.indexes("fair")


def test_new_unique_index_ignores_soft_deleted_records(backend: Backend) -> None:
    backend.migrate(fair(code="string"))
    second, plan = backend.migrate(fair(code={"type": "string", "unique": True}))
    assert [c.kind for c in plan.changes] == ["add_unique"]
    assert "uq_fair_code" in backend.indexes("fair")
    deleted = second.create("Fair", name="Old", code="CF", deleted_at=datetime.now())
    second.create("Fair", name="New", code="CF")
    with pytest.raises(TransactionIntegrityError):
        second.create("Fair", name="Clash", code="CF")
    assert second.get("Fair", deleted, "code") == "CF"


def test_unique_over_repeated_values_is_refused_and_changes_nothing(backend: Backend) -> None:
    first, _ = backend.migrate(fair(code="string", city="string"))
    first.create("Fair", name="A", code="CF")
    first.create("Fair", name="B", code="CF")
    second = backend.start(
        fair(code={"type": "string", "unique": True}, city="string", hall="string")
    )
    with pytest.raises(MigrationError, match=r"Fair\.code"):
        apply_migration(second.db, second.registry)
    assert "hall" not in backend.columns("fair")
    assert len(backend.snapshots()) == 1


def test_removed_unique_drops_index(backend: Backend) -> None:
    backend.migrate(fair(code={"type": "string", "unique": True}))
    _, plan = backend.migrate(fair(code="string"))
    assert [c.kind for c in plan.changes] == ["drop_unique"]
    assert "uq_fair_code" not in backend.indexes("fair")


def test_longer_max_length_is_applied(backend: Backend) -> None:
    backend.migrate(fair(city={"type": "string", "max_length": 10}))
    second, plan = backend.migrate(fair(city={"type": "string", "max_length": 200}))
    assert [c.kind for c in plan.changes] == ["widen_column"]
    if backend.kind == "postgres":
        assert backend.columns("fair")["city"] == "character varying(200)"
    record_id = second.create("Fair", name="Canton Fair", city="x" * 150)
    assert second.get("Fair", record_id, "city") == "x" * 150


def test_type_change_is_refused_and_changes_nothing(backend: Backend) -> None:
    backend.migrate(fair(size="string"))
    columns, snapshots = backend.columns("fair"), backend.snapshots()
    second = backend.start(fair(size="int", city="string"))

    with pytest.raises(MigrationError) as caught:
        apply_migration(second.db, second.registry)

    assert caught.value.differences == ["Fair.size: type string -> int"]
    assert "Fair.size: type string -> int" in str(caught.value)
    assert "nothing was changed" in str(caught.value)
    assert backend.columns("fair") == columns
    assert backend.snapshots() == snapshots


def test_removed_field_is_refused(backend: Backend) -> None:
    backend.migrate(fair(city="string"))
    second = backend.start(fair())
    plan = plan_migration(second.db, second.registry)
    assert len(plan.refused) == 1 and plan.refused[0].startswith(
        "Fair.city: string, max 255 -> removed"
    )
    with pytest.raises(MigrationError, match=r"Fair\.city"):
        apply_migration(second.db, second.registry)


def test_new_required_field_without_default_is_refused(backend: Backend) -> None:
    backend.migrate(fair())
    second = backend.start(fair(city={"type": "string", "required": True}))
    with pytest.raises(MigrationError, match=r"Fair\.city: \(none\) -> new required field"):
        apply_migration(second.db, second.registry)
    assert "city" not in backend.columns("fair")


def test_optional_to_required_is_refused(backend: Backend) -> None:
    backend.migrate(fair(city="string"))
    second = backend.start(fair(city={"type": "string", "required": True}))
    with pytest.raises(MigrationError) as caught:
        apply_migration(second.db, second.registry)
    assert caught.value.differences == [
        "Fair.city: optional -> required (existing records may be empty)"
    ]


def test_required_to_optional_is_accepted(backend: Backend) -> None:
    backend.migrate(fair(city={"type": "string", "required": True}))
    _, plan = backend.migrate(fair(city="string"))
    assert [c.kind for c in plan.changes] == ["relax_required"]
    assert backend.snapshots()[-1]["entities"]["Fair"]["fields"]["city"]["nullable"] is True


def test_removed_entity_is_retained(backend: Backend) -> None:
    first, _ = backend.migrate(fair())
    first.create("Fair", name="Canton Fair")
    hall = {"name": "Hall", "fields": {"label": "string"}}

    _, plan = backend.migrate(hall)  # the plugin declaring Fair is disabled

    assert plan.retained == ("Fair",)
    assert backend.rows('SELECT name FROM "fair"') == [("Canton Fair",)]
    assert "Fair" in backend.snapshots()[-1]["entities"]
    assert third_start_plans_nothing(backend, fair(), hall)  # enabled again


def test_tables_without_record_are_refused(backend: Backend) -> None:
    other = backend.start(fair())
    other.db.create_tables()  # made by something other than migrations
    second = backend.start(fair())
    plan = plan_migration(second.db, second.registry)
    assert not plan.fresh and not plan.changes
    with pytest.raises(MigrationError, match="no record"):
        apply_migration(second.db, second.registry)


def test_concurrent_applies_add_the_column_once(backend: Backend) -> None:
    backend.migrate(fair())
    starts = [backend.start(fair(city="string")) for _ in range(2)]
    barrier = threading.Barrier(2)
    plans: list[MigrationPlan] = []
    errors: list[BaseException] = []

    def run(started: Started) -> None:
        barrier.wait()
        try:
            plans.append(apply_migration(started.db, started.registry))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sorted(p.pending for p in plans) == [False, True]
    assert list(backend.columns("fair")).count("city") == 1
    assert len(backend.snapshots()) == 2
