"""Packaging: the graphql/ import-name trap, and every package folder in the build."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_graphql_from_the_repository_root_is_graphql_core():
    # `python -c` puts the current directory first on sys.path, like pytest or uvicorn
    # started from the root would: the graphql/ folder must not shadow graphql-core.
    code = "import strawberry, graphql; print(graphql.__file__); print(graphql.version)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "site-packages" in out[0] and not out[0].startswith(str(ROOT / "graphql"))
    assert out[1].startswith("3.")


def test_graphql_folder_has_no_init_module():
    assert not (ROOT / "graphql" / "__init__.py").exists()


def python_folders() -> set[str]:
    """Every folder of the four mapped trees that holds Python code, as a package name."""
    found = set()
    for top, namespace in (
        ("engine", "guanxi.engine"),
        ("graphql", "guanxi.graphql"),
        ("plugins", "guanxi.plugins"),
        ("workflows", "guanxi.workflows"),
    ):
        for path in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in path.parts:
                continue
            if any(path.glob("*.py")) or path == ROOT / top:
                rel = path.relative_to(ROOT / top).parts
                found.add(".".join((namespace, *rel)))
    return found


def test_every_python_folder_is_in_the_package_list():
    assert python_folders() == set(SETUPTOOLS["packages"])


def test_every_package_is_mapped_to_its_folder():
    mapping = SETUPTOOLS["package-dir"]
    for package in SETUPTOOLS["packages"]:
        assert (ROOT / mapping[package]).is_dir(), package


def test_every_shipped_plugin_folder_has_an_entry_point():
    plugins = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}
    entry_points = PYPROJECT["project"]["entry-points"]["guanxi"]
    assert plugins | {"graphql"} == set(entry_points)


def test_the_wheel_contains_every_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("guanxi-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in SETUPTOOLS["packages"]:
        folder = package.replace(".", "/") + "/"
        assert any(n.startswith(folder) and n.endswith(".py") for n in names) or any(
            n.startswith(folder) for n in names
        ), f"{package} is missing from the wheel"
    assert "guanxi/graphql/plugin.py" in names
    assert not any(n.startswith("graphql/") for n in names)
