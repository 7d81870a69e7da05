"""docs/api.md stays true: its examples run against the real app, in the order they appear.

Conventions in docs/api.md (HTML comments, invisible when the page is rendered), each on
the line right before a fenced block:

- ``<!-- run -->`` or ``<!-- run {json options} -->`` before a ```graphql block: the test
  sends it to ``/graphql`` as the admin and expects an answer without errors. Options:
  ``variables``; ``headers``; ``as`` (a user name whose fresh token to send, or null for
  no token); ``error`` (the ``extensions.code`` the answer must have instead);
  ``previous`` (``{"variable": "dotted.path"}``: variables taken from the ``data`` of the
  previous runnable example); ``deliver`` (true: deliver the outbox first, as the worker
  would).
- ``<!-- response -->`` before a ```json block: the exact answer of the runnable example
  before it.
- ``<!-- setup workflows/NAME.yaml -->`` before a ```yaml block: written to the admin home.
- ``<!-- setup plugin -->`` before a ```python block: loaded as a plugin module.

Every other ```graphql block that is an operation (not SDL) must validate against the
schema. The app starts from a fresh database with the expo test plugin, the setup blocks,
an admin ``root`` and one Fair (id 1), as the page says.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from graphql import (
    ExecutableDefinitionNode,
    GraphQLObjectType,
    ObjectTypeDefinitionNode,
    parse,
    print_ast,
    validate,
)
from guanxi.engine import Engine
from guanxi.engine.worker import deliver_outbox
from guanxi.graphql.app import build_app
from guanxi.graphql.errors import CODES
from guanxi.graphql.limits import Limits
from guanxi.graphql.schema import build_schema
from guanxi.graphql.types import OPERATORS

DOC = Path(__file__).parents[1] / "docs" / "api.md"
ADMIN, PASSWORD = "root", "correct horse battery"
FAIR = {"name": "Chengdu spring", "city": "Chengdu", "season": "spring"}
MARKER = re.compile(r"^<!-- (run|response|setup)\b\s*(.*?)\s*-->$")
FENCE = re.compile(r"^```(\w*)\s*$")
PLUGIN_MODULE = "guanxi_api_docs_plugin"


@dataclass
class Block:
    language: str
    text: str
    line: int  # 1-based line of the opening fence
    marker: str | None = None  # run, response, setup
    argument: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        return f"docs/api.md:{self.line}"


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` with the marker comment right before it, if any."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        block = Block(opening.group(1), "\n".join(lines[i + 1 : end]) + "\n", i + 1)
        before = lines[i - 1].strip() if i else ""
        marked = MARKER.match(before)
        if marked:
            block.marker, block.argument = marked.group(1), marked.group(2)
            if block.marker == "run" and block.argument:
                block.options = json.loads(block.argument)
        found.append(block)
        i = end + 1
    return found


DOC_BLOCKS = blocks(DOC.read_text(encoding="utf-8"))


def runnable() -> list[tuple[Block, Block | None]]:
    """The runnable examples, each with the response block that follows it (if any)."""
    pairs: list[tuple[Block, Block | None]] = []
    for block in DOC_BLOCKS:
        if block.marker == "run":
            pairs.append((block, None))
        elif block.marker == "response":
            assert pairs and pairs[-1][1] is None, f"{block.where()}: a response needs a run"
            pairs[-1] = (pairs[-1][0], block)
    return pairs


def setup_blocks(kind: str) -> list[Block]:
    return [b for b in DOC_BLOCKS if b.marker == "setup" and b.argument.split("/")[0] == kind]


def load_plugin(source: str) -> types.ModuleType:
    """The ``<!-- setup plugin -->`` block as a module (strawberry looks types up in
    ``sys.modules``, so it is registered there while the test runs)."""
    module = types.ModuleType(PLUGIN_MODULE)
    sys.modules[PLUGIN_MODULE] = module
    # dont_inherit: this file's ``from __future__ import annotations`` must not leak in
    code = compile(source, f"docs/api.md ({PLUGIN_MODULE})", "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return module


@pytest.fixture
def docs_engine(make_engine: Any, home: Path, test_plugin: Any) -> Iterator[Engine]:
    for block in setup_blocks("workflows"):
        (home / block.argument).write_text(block.text, encoding="utf-8")
    plugins = [load_plugin(b.text) for b in setup_blocks("plugin")]
    try:
        yield make_engine(test_plugin("expo"), *plugins)
    finally:
        sys.modules.pop(PLUGIN_MODULE, None)


def dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        data = data[key]
    return data


def test_the_page_has_runnable_examples_and_its_setup() -> None:
    assert len(runnable()) >= 30
    assert sum(1 for _, response in runnable() if response) >= 20
    assert [b.argument for b in setup_blocks("workflows")] == ["workflows/booking.yaml"]
    assert len(setup_blocks("plugin")) == 1
    for block, response in runnable():
        assert block.language == "graphql", block.where()
        assert response is None or response.language == "json", response.where()
        assert set(block.options) <= {"variables", "headers", "as", "error", "previous", "deliver"}


def test_every_runnable_example_answers_as_documented(docs_engine: Engine) -> None:
    engine = docs_engine
    admin = engine.auth.create_user(ADMIN, password=PASSWORD, roles=["admin"])
    tokens = {ADMIN: engine.auth.issue_token(admin.id).token}
    engine.records.create("Fair", FAIR)
    failures: list[str] = []
    previous: Any = None
    with TestClient(build_app(engine, Limits())) as client:
        for block, response in runnable():
            options = block.options
            who = options.get("as", ADMIN)
            if who is not None and who not in tokens:
                tokens[who] = engine.auth.issue_token(engine.auth.user_id(who)).token
            headers = dict(options.get("headers", {}))
            if who is not None:
                headers["Authorization"] = f"Bearer {tokens[who]}"
            variables = dict(options.get("variables", {}))
            for name, path in options.get("previous", {}).items():
                variables[name] = dig(previous["data"], path)
            if options.get("deliver"):
                deliver_outbox(engine)
            body = {"query": block.text, "variables": variables}
            answer = client.post("/graphql", json=body, headers=headers).json()
            previous = answer
            errors = answer.get("errors") or []
            codes = [e.get("extensions", {}).get("code") for e in errors]
            expected = options.get("error")
            if expected is None and errors:
                failures.append(f"{block.where()}: unexpected errors {errors}")
            elif expected is not None and codes[:1] != [expected]:
                failures.append(f"{block.where()}: expected {expected}, got {answer}")
            elif response is not None and answer != json.loads(response.text):
                shown = json.dumps(answer, indent=2, ensure_ascii=False)
                failures.append(f"{response.where()}: the answer differs; it is\n{shown}")
    assert not failures, "\n\n".join(failures)


def test_every_other_operation_is_valid_against_the_schema(docs_engine: Engine) -> None:
    schema = build_schema(docs_engine, Limits())._schema
    checked, problems = 0, []
    for block in DOC_BLOCKS:
        if block.language != "graphql" or block.marker == "run":
            continue
        document = parse(block.text)  # every graphql block parses: SDL or an operation
        if not all(isinstance(d, ExecutableDefinitionNode) for d in document.definitions):
            continue  # SDL, shown for reading
        checked += 1
        problems += [f"{block.where()}: {e.message}" for e in validate(schema, document)]
    assert checked >= 1
    assert not problems, "\n".join(problems)


def test_the_sdl_shown_matches_the_schema(docs_engine: Engine) -> None:
    """Every field (and argument) of a ``type`` shown in SDL has that type in the schema."""
    schema = build_schema(docs_engine, Limits())._schema
    checked, problems = 0, []
    for block in DOC_BLOCKS:
        if block.language != "graphql" or block.marker == "run":
            continue
        for definition in parse(block.text).definitions:
            if not isinstance(definition, ObjectTypeDefinitionNode):
                continue
            name = definition.name.value
            real = schema.get_type(name)
            if not isinstance(real, GraphQLObjectType):
                problems.append(f"{block.where()}: the schema has no object type {name}")
                continue
            for shown in definition.fields or ():
                checked += 1
                where = f"{block.where()}: {name}.{shown.name.value}"
                field_ = real.fields.get(shown.name.value)
                if field_ is None:
                    problems.append(f"{where} does not exist")
                    continue
                if str(field_.type) != print_ast(shown.type):
                    problems.append(f"{where} is {field_.type}, not {print_ast(shown.type)}")
                for arg in shown.arguments or ():
                    real_arg = field_.args.get(arg.name.value)
                    if real_arg is None or str(real_arg.type) != print_ast(arg.type):
                        problems.append(f"{where}({arg.name.value}) differs from the schema")
    assert checked >= 20
    assert not problems, "\n".join(problems)


def section(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert found, f"docs/api.md has no section ## {name}"
    return found.group(1)


def test_every_error_code_is_described_in_the_errors_table() -> None:
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", section("Errors"), flags=re.M)
    described = {code for code, when in rows if when.strip()}
    assert described == CODES, (
        f"missing: {sorted(CODES - described)}, unknown: {sorted(described - CODES)}"
    )


def test_every_limit_setting_and_filter_operator_is_documented() -> None:
    limits_source = (Path(__file__).parents[1] / "graphql" / "limits.py").read_text()
    settings = set(re.findall(r'"(GUANXI_[A-Z_]+)"', limits_source))
    assert settings, "graphql/limits.py reads no GUANXI_* setting?"
    limits = section("Limits")
    assert not sorted(s for s in settings if f"`{s}" not in limits)
    operators = section("Filters")
    assert not sorted(op for op in OPERATORS if f"`{op}`" not in operators)


def test_every_root_field_but_the_generated_crud_is_documented(docs_engine: Engine) -> None:
    schema = build_schema(docs_engine, Limits())._schema
    crud = re.compile(r"^(create|update|delete|restore)[A-Z]")
    entities = docs_engine.registry
    generated = {name for spec in entities for name in (_camel(spec.table), _camel(spec.plural))}
    text = DOC.read_text(encoding="utf-8")
    missing = [
        name
        for root in (schema.query_type, schema.mutation_type)
        for name in root.fields
        if name not in generated and not crud.match(name) and f"`{name}" not in text
    ]
    assert not missing, f"docs/api.md does not mention: {', '.join(missing)}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
