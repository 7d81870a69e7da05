"""The documentation keeps up with the code: every hook, field type, option and entity key
is documented, and the examples in the docs actually load."""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Iterable
from pathlib import Path

import pytest

from guanxi.engine import Config, Engine, hookspecs
from guanxi.engine.metadata import ENTITY_KEYS, FIELD_OPTIONS, FIELD_TYPES

DOCS = Path(__file__).parents[1] / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def hook_names() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if getattr(fn, "guanxi_spec", None) is not None
    ]


def undocumented(names: Iterable[str], text: str) -> list[str]:
    return sorted(name for name in names if f"`{name}`" not in text)


def open_engine(home: Path, tmp_path: Path, plugins: tuple[object, ...] = ()) -> Engine:
    config = Config(home=home, database_url=f"sqlite:///{tmp_path}/g.db")
    engine = Engine(config, plugins=plugins, use_entry_points=False)
    engine.open(migrate=True)
    return engine


def test_hookspecs_are_found() -> None:
    assert {"register_entities", "before_commit", "deliver_message"} <= set(hook_names())


def test_every_hook_has_a_section_in_plugins_md() -> None:
    sections = set(re.findall(r"^### (\w+)\s*$", read("plugins.md"), flags=re.M))
    missing = sorted(set(hook_names()) - sections)
    assert not missing, f"docs/plugins.md has no `### <hook>` section for: {', '.join(missing)}"


def test_every_hook_section_shows_its_signature() -> None:
    text = read("plugins.md")
    wrong = []
    for name in hook_names():
        args = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        if f"### {name}\n\n```python\n{name}({args})\n```" not in text:
            wrong.append(f"{name}({args})")
    assert not wrong, f"docs/plugins.md lacks the exact signature of: {', '.join(wrong)}"


@pytest.mark.parametrize(
    ("kind", "names"),
    [("field type", FIELD_TYPES), ("field option", FIELD_OPTIONS), ("entity key", ENTITY_KEYS)],
)
def test_entities_md_names_every(kind: str, names: frozenset[str]) -> None:
    missing = undocumented(names, read("entities.md"))
    assert not missing, f"docs/entities.md does not mention the {kind}(s): {', '.join(missing)}"


def test_yaml_example_of_entities_md_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "entities").mkdir(parents=True)
    (home / "entities" / "x.yaml").write_text(code_blocks(read("entities.md"), "yaml")[0])
    engine = open_engine(home, tmp_path)
    try:
        assert "ExpoBooking" in engine.registry
        assert "city" in engine.registry["Fair"].fields
    finally:
        engine.close()


def test_example_plugin_of_plugins_md_loads(tmp_path: Path) -> None:
    source = next(b for b in code_blocks(read("plugins.md"), "python") if "WechatMessage" in b)
    module = types.ModuleType("guanxi_docs_example_plugin")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    engine = open_engine(tmp_path / "home", tmp_path, plugins=(module,))
    try:
        assert engine.plugin("wechat") is not None
        assert "WechatMessage" in engine.registry
        assert "wechat_id" in engine.registry["User"].fields
    finally:
        engine.close()
