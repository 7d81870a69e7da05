"""``guanxi user add|list`` and ``guanxi token``, run as an admin would (the console script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guanxi.engine import Config, Engine

GUANXI = str(Path(sys.executable).with_name("guanxi"))
PASSWORD = "correct horse battery"


@pytest.fixture
def run(tmp_path, database_url):
    """Run ``guanxi ARGS`` with the sales plugin (its roles) on an initialised database."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, check: bool = True, stdin: str | None = None):
        environ = {
            **os.environ,
            "GUANXI_HOME": str(home),
            "GUANXI_DATABASE_URL": database_url,
            "GUANXI_PLUGINS": "sales",
            "COLUMNS": "200",
        }
        result = subprocess.run(
            [GUANXI, *args],
            cwd=home,
            env=environ,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"guanxi {' '.join(args)} failed:\n{result.stderr}")
        return result

    run("init")
    run.home = home  # type: ignore[attr-defined]
    run.url = database_url  # type: ignore[attr-defined]
    return run


@pytest.fixture
def engine(run):
    """An Engine on the same installation as the commands (same plugins, same database)."""
    engine = Engine(Config(home=run.home, database_url=run.url, plugins=("sales",)))
    engine.open()
    yield engine
    engine.close()


def test_user_add_creates_a_user_with_roles_and_team(run, engine):
    engine.records.create("Team", {"name": "east"})
    out = run(
        "user", "add", "wang", "--role", "customer_manager", "--role", "finance",
        "--team", "east", "--display-name", "Wang Fang",
    ).stdout  # fmt: skip
    assert "added user wang" in out
    user = engine.records.list("User", filter={"username": {"eq": "wang"}}).records[0]
    assert (user.roles, user.display_name, user.active) == (
        ["customer_manager", "finance"],
        "Wang Fang",
        True,
    )
    assert user.password_hash is None


def test_user_add_with_password_stdin_lets_the_user_log_in(run, engine):
    run("user", "add", "wang", "--role", "customer_manager", "--password-stdin",
        stdin=PASSWORD + "\n")  # fmt: skip
    session = engine.auth.login("wang", PASSWORD, address="127.0.0.1")
    assert session.user["username"] == "wang"


def test_user_add_with_an_unknown_role_fails_with_one_clear_line(run):
    result = run("user", "add", "wang", "--role", "boss", check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "User.roles: unknown role(s) 'boss'" in result.stderr
    assert "Traceback" not in result.stderr


def test_user_add_with_a_short_password_fails_naming_the_password(run):
    result = run("user", "add", "wang", "--password-stdin", stdin="short\n", check=False)
    assert result.returncode == 1
    assert "User.password: must be at least 8 characters" in result.stderr


def test_user_list_shows_name_display_name_roles_team_and_status(run, engine):
    engine.records.create("Team", {"name": "east"})
    engine.auth.create_user("wang", roles=["finance"], team="east", display_name="Wang Fang")
    li = engine.auth.create_user("li", roles=["executive"])
    engine.records.update("User", li.id, {"active": False})
    lines = run("user", "list").stdout.splitlines()
    wang = next(line for line in lines if " wang " in line)
    for text in ("Wang Fang", "finance", "east", "yes"):
        assert text in wang
    assert "no" in next(line for line in lines if " li " in line)


def test_token_prints_a_token_on_its_last_line_that_authenticates(run, engine):
    user = engine.auth.create_user("wang", roles=["customer_manager"])
    lines = run("token", "wang", "--days", "7").stdout.strip().splitlines()
    assert lines[0].startswith("token for wang, valid until ")
    actor = engine.auth.authenticate(lines[-1])
    assert (actor.id, actor.roles) == (user.id, frozenset({"customer_manager"}))


def test_token_for_an_unknown_user_fails_with_one_clear_line(run):
    result = run("token", "nobody", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: there is no user named 'nobody'"


def test_user_commands_refuse_to_run_while_migrations_are_pending(run):
    (run.home / "entities" / "extra.yaml").write_text(
        "entities:\n  - name: Fair\n    fields:\n      name: {type: string}\n", encoding="utf-8"
    )
    result = run("user", "list", check=False)
    assert result.returncode == 1
    assert "guanxi migrate" in result.stderr
