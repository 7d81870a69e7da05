"""The guanxi command line, run as a user would run it (the installed console script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GUANXI = str(Path(sys.executable).with_name("guanxi"))

FAIRS = """\
entities:
  - name: Fair
    label: Trade fair
    labels: {zh: 糖酒会}
    fields:
      name:   {type: string, required: true, unique: true, max_length: 120}
      season: {type: enum, choices: [spring, autumn]}
  - name: ExpoBooking
    label: Expo booking
    labels: {zh: 展位预订}
    owned: true
    fields:
      title:    {type: string, required: true, max_length: 200}
      booth_m2: {type: decimal, min: 0}
      fair:     {type: ref, to: Fair, required: true}
      cancel_reason: {type: string, max_length: 200}
extend:
  Fair:
    city: {type: string, max_length: 64}
"""


@pytest.fixture
def run(tmp_path, database_url):
    """Run ``guanxi ARGS`` in an admin home on this test's database."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            **os.environ,
            "GUANXI_HOME": str(home),
            "GUANXI_DATABASE_URL": database_url,
            "GUANXI_PLUGINS": "",
            "COLUMNS": "200",
            **env,
        }
        result = subprocess.run(
            [GUANXI, *args], cwd=home, env=environ, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"guanxi {' '.join(args)} failed:\n{result.stderr}")
        return result

    run.home = home  # type: ignore[attr-defined]
    return run


def write_entities(run, text: str) -> None:
    folder = run.home / "entities"
    folder.mkdir(exist_ok=True)
    (folder / "fairs.yaml").write_text(text, encoding="utf-8")


def test_version_prints_the_version(run):
    assert run("--version").stdout.startswith("guanxi, version ")


def test_help_lists_the_commands_including_plugin_commands(run):
    out = run("--help").stdout
    for command in ("init", "migrate", "plugins", "entities", "serve", "demo"):
        assert command in out


def test_init_creates_the_admin_folders_and_the_tables(run):
    write_entities(run, FAIRS)
    out = run("init").stdout
    assert (run.home / "workflows").is_dir()
    assert "create table ExpoBooking" in out or "ExpoBooking" in out
    assert "schema: up to date" in run("migrate").stdout


def test_init_twice_adds_a_new_optional_field(run):
    write_entities(run, FAIRS)
    run("init")
    write_entities(run, FAIRS.replace("      season:", "      hall: {type: string}\n      season:"))
    out = run("init").stdout
    assert "Fair.hall" in out
    assert "hall" in run("entities", "Fair").stdout


def test_a_changed_field_type_is_refused_naming_the_field_and_nothing_changes(run):
    write_entities(run, FAIRS)
    run("init")
    write_entities(run, FAIRS.replace("booth_m2: {type: decimal, min: 0}", "booth_m2: {type: int}"))
    result = run("init", check=False)
    assert result.returncode == 1
    assert "ExpoBooking.booth_m2" in result.stderr and "nothing was changed" in result.stderr
    assert len(result.stderr.strip().splitlines()) < 10  # a clear message, no traceback
    write_entities(run, FAIRS)
    assert "schema: up to date" in run("migrate").stdout


def test_migrate_dry_run_lists_changes_without_applying(run):
    write_entities(run, FAIRS)
    run("init")
    write_entities(run, FAIRS.replace("      season:", "      hall: {type: string}\n      season:"))
    assert "pending" in run("migrate", "--dry-run").stdout
    assert "Fair.hall" in run("migrate").stdout


def test_serve_refuses_to_start_while_migrations_are_pending(run):
    write_entities(run, FAIRS)
    run("init")
    write_entities(run, FAIRS.replace("      season:", "      hall: {type: string}\n      season:"))
    result = run("serve", "--port", "0", check=False)
    assert result.returncode == 1 and "guanxi migrate" in result.stderr
    assert "Fair.hall" in result.stderr


def test_a_bad_entities_file_names_file_and_line(run):
    write_entities(run, FAIRS.replace("type: enum", "type: enumm"))
    result = run("init", check=False)
    assert result.returncode == 1
    assert "fairs.yaml:7" in result.stderr and "unknown type 'enumm'" in result.stderr


def test_a_ref_to_an_unknown_entity_names_file_and_line(run):
    write_entities(run, FAIRS.replace("to: Fair", "to: Fiar"))
    result = run("init", check=False)
    assert "fairs.yaml:15" in result.stderr and "'Fiar'" in result.stderr


def test_an_admin_field_clashing_with_a_plugin_field_is_refused(run):
    write_entities(run, "extend:\n  User:\n    username: {type: string}\n")
    result = run("init", check=False)
    assert result.returncode == 1 and "User.username is already declared" in result.stderr


def test_plugins_lists_the_loaded_plugins(run):
    out = run("plugins", GUANXI_PLUGINS="sales,marketing").stdout
    assert "graphql" in out and "sales" in out and "marketing" in out and "rfm" not in out


def test_entities_shows_fields_with_labels_in_chinese(run):
    write_entities(run, FAIRS)
    out = run("entities", "ExpoBooking", "--lang", "zh").stdout
    assert "展位预订" in out and "fair" in out and "-> Fair" in out


def test_an_unknown_entity_is_one_clear_line(run):
    result = run("entities", "Nope", check=False)
    assert result.returncode == 1 and result.stderr.startswith("Error: there is no entity 'Nope'")


def test_a_bad_database_url_is_one_clear_line(run):
    result = run("init", check=False, GUANXI_DATABASE_URL="mysql://x")
    assert result.returncode == 1 and "is not understood" in result.stderr
    assert "Traceback" not in result.stderr
