"""Fixtures shared by the suite.

Every test that touches a database runs twice: on a fresh SQLite file and, when
GUANXI_TEST_POSTGRES_URL is set, on a fresh PostgreSQL database made for that test.
"""

from __future__ import annotations

import compileall
import importlib.util
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
from pony.orm import set_sql_debug

from guanxi.engine import Config, Engine

TESTS = Path(__file__).parent
POSTGRES_ENV = "GUANXI_TEST_POSTGRES_URL"
SKIP_POSTGRES = (
    f"PostgreSQL run skipped: set {POSTGRES_ENV}, e.g. postgres://postgres@127.0.0.1:5432/postgres"
)


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package once, before the workers start: the suite starts dozens of
    ``guanxi`` subprocesses (CLI commands, servers), and where PYTHONDONTWRITEBYTECODE is
    set, as on the CI machine, each would compile every module it imports again."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    root = TESTS.parent
    for package in ("engine", "graphql", "plugins"):
        compileall.compile_dir(root / package, quiet=1)


#: The instant every injected clock starts at.
T0 = datetime(2027, 3, 1, 9, 0, 0)


class Clock:
    """An injected clock tests move by hand (``Engine(clock=...)``)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def load_test_plugin(name: str) -> ModuleType:
    """Import ``tests/plugins/<name>.py`` as a fresh module (tests register it by object)."""
    module_name = f"guanxi_test_plugins.{name}"
    spec = importlib.util.spec_from_file_location(module_name, TESTS / "plugins" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def test_plugin() -> Callable[[str], ModuleType]:
    return load_test_plugin


def _postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def create_postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new empty database on the server of ``admin_url``; returns its URL and a dropper."""
    import psycopg2

    name = f"gx_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    parts = urlparse(admin_url)

    def drop() -> None:
        conn = psycopg2.connect(admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    return urlunparse(parts._replace(path=f"/{name}")), drop


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a new empty database of ``kind`` (a PostgreSQL one is dropped
    afterwards; without GUANXI_TEST_POSTGRES_URL the test is skipped)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'guanxi.db'}"
        return
    admin = _postgres_admin_url()
    if not admin:
        pytest.skip(SKIP_POSTGRES)
    url, drop = create_postgres_database(admin)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each kind."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty admin home (``GUANXI_HOME``)."""
    path = tmp_path / "home"
    (path / "entities").mkdir(parents=True)
    (path / "workflows").mkdir()
    return path


@pytest.fixture
def make_engine(database_url: str, home: Path) -> Iterator[Callable[..., Engine]]:
    """Build (and by default open) engines on this test's database; closed at teardown.

    Installed entry-point plugins are not loaded unless ``use_entry_points=True``, so a
    test sees exactly the plugins it passes.
    """
    engines: list[Engine] = []

    def make(
        *plugins: Any,
        open: bool = True,
        migrate: bool = True,
        use_entry_points: bool = False,
        clock: Callable[[], Any] | None = None,
        **config: Any,
    ) -> Engine:
        cfg = Config(home=home, database_url=database_url, **config)
        engine = Engine(cfg, plugins=plugins, use_entry_points=use_entry_points, clock=clock)
        engines.append(engine)
        if open:
            engine.open(migrate=migrate)
        return engine

    yield make
    for engine in engines:
        engine.close()


def cli_in_home(
    tmp_path: Path, database_url: str, plugins: str = "sales", columns: int = 200
) -> tuple[Path, Callable[..., Any]]:
    """An initialised installation in ``tmp_path/home`` and ``run(*args)``, which runs
    ``guanxi ARGS`` there in-process (click's CliRunner)."""
    from click.testing import CliRunner

    from guanxi.engine.cli import cli

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "GUANXI_HOME": str(home),
        "GUANXI_DATABASE_URL": database_url,
        "GUANXI_PLUGINS": plugins,
        "COLUMNS": str(columns),
    }

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    assert run("init").exit_code == 0
    return home, run


@contextmanager
def sql_log() -> Iterator[list[str]]:
    """The SQL statements Pony sends meanwhile (this thread)."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("pony.orm.sql")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    set_sql_debug(True, show_values=False)
    try:
        yield seen
    finally:
        set_sql_debug(False)
        logger.removeHandler(handler)
        logger.setLevel(level)
