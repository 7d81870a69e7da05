"""Tests for guanxi.engine.yamlload: located data, YAML 1.2 scalars, and every refusal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guanxi.engine.errors import ConfigError
from guanxi.engine.yamlload import LocatedDict, load_yaml, where

WORKFLOW = """\
name: sales
states:
  - name: lead
    final: false
  - name: won
    final: true
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_key_and_nested_node_lines(tmp_path: Path) -> None:
    path = write(tmp_path, WORKFLOW)
    data = load_yaml(path)
    assert isinstance(data, LocatedDict)
    assert data.source == str(path)
    assert data.line == 1
    assert data.key_lines == {"name": 1, "states": 2}
    assert data["states"].line == 3
    assert data["states"][1].line == 5
    assert data["states"][1].key_lines == {"name": 5, "final": 6}
    assert where(data, "states") == f"{path}:2"
    assert where(data["states"][1], "final") == f"{path}:6"


def test_where_falls_back_to_source_without_line() -> None:
    data = load_yaml("inline.yaml", text="a: 1")
    assert where(data, "missing") == "inline.yaml"
    assert where({"a": 1}) == "<unknown>"


def test_on_off_yes_no_stay_strings() -> None:
    data = load_yaml("t.yaml", text="a: on\nb: off\nc: yes\nd: no\ne: y\nf: n\ng: NO\n")
    assert data == {"a": "on", "b": "off", "c": "yes", "d": "no", "e": "y", "f": "n", "g": "NO"}


def test_true_false_are_bools() -> None:
    data = load_yaml("t.yaml", text="[true, false, True, False, TRUE, FALSE]")
    assert data == [True, False, True, False, True, False]
    assert all(type(v) is bool for v in data)


def test_numbers_null_and_dates() -> None:
    data = load_yaml(
        "t.yaml",
        text="i: 12\no: 012\nf: 1.5\ne: 1e3\nn: ~\nm:\nd: 2024-01-01\nt: 10:30\n",
    )
    assert data == {
        "i": 12,
        "o": 12,
        "f": 1.5,
        "e": 1000.0,
        "n": None,
        "m": None,
        "d": "2024-01-01",
        "t": "10:30",
    }


def test_duplicate_key_names_both_lines() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml("dup.yaml", text="a: 1\nb: 2\na: 3\n")
    assert info.value.where == "dup.yaml:3"
    assert "duplicate key 'a' (first at line 1)" in str(info.value)


def test_billion_laughs_alias_bomb_rejected() -> None:
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        bomb.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(ConfigError, match="anchors and aliases are not allowed"):
        load_yaml("bomb.yaml", text="\n".join(bomb))


def test_anchor_rejected() -> None:
    with pytest.raises(ConfigError, match="anchors and aliases are not allowed") as info:
        load_yaml("anchor.yaml", text="x: 1\ny: &only 2\n")
    assert info.value.where == "anchor.yaml:2"


def test_python_object_tag_rejected_and_never_executed(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command) or 0)
    with pytest.raises(ConfigError, match=r"!!python/object/apply:os\.system"):
        load_yaml("evil.yaml", text='!!python/object/apply:os.system ["echo hi"]\n')
    assert calls == []
    assert "hi" not in capfd.readouterr().out


def test_custom_tag_rejected() -> None:
    with pytest.raises(ConfigError, match="!foo") as info:
        load_yaml("tag.yaml", text="a: 1\nb: !foo bar\n")
    assert info.value.where == "tag.yaml:2"


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block-list"])
def test_deep_nesting_rejected_with_config_error(depth: int, style: str) -> None:
    text = {
        "flow-list": "[" * depth + "]" * depth,
        "flow-map": "{a: " * depth + "1" + "}" * depth,
        "block-list": "- " * depth + "x",
    }[style]
    with pytest.raises(ConfigError, match="nesting deeper than 64"):
        load_yaml("deep.yaml", text=text)


def test_nesting_past_python_stack_is_config_error() -> None:
    # A caller may raise max_depth beyond what the recursive composer can hold.
    with pytest.raises(ConfigError, match="too deep"):
        load_yaml("deep.yaml", text="[" * 100_000 + "]" * 100_000, max_depth=1_000_000)


def test_max_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "a: " + "x" * 200 + "\n")
    assert load_yaml(path, max_bytes=1_000) == {"a": "x" * 200}
    with pytest.raises(ConfigError, match="100 bytes") as info:
        load_yaml(path, max_bytes=100)
    assert info.value.where == str(path)


def test_max_nodes() -> None:
    text = "[" + ", ".join(["1"] * 50) + "]"
    assert len(load_yaml("n.yaml", text=text, max_nodes=51)) == 50
    with pytest.raises(ConfigError, match="more than 50 YAML nodes"):
        load_yaml("n.yaml", text=text, max_nodes=50)


def test_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: sales\nstates:\n  - [lead, won\nnext: 1\n")
    with pytest.raises(ConfigError, match="YAML syntax error") as info:
        load_yaml(path)
    assert info.value.where == f"{path}:4"
    assert str(info.value).startswith(f"{path}:4: ")
    assert "\n" not in str(info.value)


def test_missing_file_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_yaml(path)
    assert str(path) in str(info.value)


def test_bom_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: sales\n")
    data = load_yaml(path)
    assert data == {"name": "sales"}
    assert data.key_lines == {"name": 1}


def test_chinese_text_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, "客户:\n  名称: 重点客户\n  阶段: [考察期, 形成期]\n")
    data = load_yaml(path)
    assert data == {"客户": {"名称": "重点客户", "阶段": ["考察期", "形成期"]}}
    assert data["客户"].key_lines == {"名称": 2, "阶段": 3}
