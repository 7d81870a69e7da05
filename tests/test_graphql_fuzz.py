"""A bounded, seeded schemathesis run over the whole GraphQL schema finds no server error.

Every root query and mutation of the schema (core, generated CRUD for the expo test
entities, workflows) is fuzzed with valid documents (schemathesis' positive mode) and
with documents carrying wrong argument values (negative mode), as an admin, against a
database holding a few records. No answer may be a 5xx, and every error must carry one
of the contract's codes - never INTERNAL.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes

from guanxi.engine import GuanxiError
from guanxi.graphql.errors import CODES

from .graphql_client import create_admin, graphql_client
from .test_workflow_runtime import WORKFLOW

#: Documents per operation (44 of them): 20 valid, 6 with wrong values - about 30 s a run.
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 6}


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none().map(lambda _: nodes.Null),
        st.booleans().map(nodes.Boolean),
        st.integers(-(2**31), 2**31 - 1).map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.text(max_size=20).map(nodes.String),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3).map(nodes.List),
            st.dictionaries(
                st.from_regex(r"[a-z_]{1,8}", fullmatch=True), children, max_size=3
            ).map(lambda d: nodes.Object([_object_field(k, v) for k, v in d.items()])),
        ),
        max_leaves=6,
    )


def _object_field(name: str, value: Any) -> Any:
    import graphql

    return graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=value)


# Scalars schemathesis has no strategy for. Decimals travel as strings: any number, huge
# ones, NaN, Infinity and text that is no number at all.
schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(
        st.decimals(places=2, min_value=Decimal("-1e9"), max_value=Decimal("1e9")).map(str),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.text(max_size=12),
    ).map(nodes.String),
)
schemathesis.graphql.scalar("JSON", _json_values())
# A file travels as a multipart part; inside a JSON document the fuzzer can only send text.
schemathesis.graphql.scalar("Upload", st.text(max_size=20).map(nodes.String))


class AdminTokens:
    """A valid admin token for every case: the fuzzer may log the admin out, deactivate
    or delete them; a new admin then takes over."""

    def __init__(self, engine: Any, token: str) -> None:
        self.engine = engine
        self.current = token

    def token(self) -> str:
        try:
            self.engine.auth.authenticate(self.current)
        except GuanxiError:
            self.current = create_admin(self.engine, f"fuzz-{uuid.uuid4().hex[:12]}")
        return self.current


@pytest.fixture
def engine(make_engine, home, test_plugin):
    (home / "workflows" / "booking.yaml").write_text(WORKFLOW, encoding="utf-8")
    engine = make_engine(test_plugin("expo"), test_plugin("booking_flow"))
    records = engine.records
    team = records.create("Team", {"name": "Fair office"})
    records.create("Team", {"name": "Fair office west", "parent": team.id})
    fair = records.create("Fair", {"name": "Chengdu spring", "season": "spring"})
    for i in range(3):
        records.create("ExpoBooking", {"title": f"Booth {i}", "fair": fair.id, "booth_m2": "12.5"})
    quote = records.create("Quote", {"title": "Booths"})
    records.create(
        "QuoteLine", {"quote": quote.id, "product": "Booth", "quantity": 2, "unit_price": "9.90"}
    )
    return engine


def problems_of(response: Any) -> list[str]:
    """What is wrong with one answer: a 5xx, a body that is no GraphQL answer, an error
    without a contract code or with INTERNAL."""
    if response.status_code >= 500:
        return [f"HTTP {response.status_code}: {response.text[:300]}"]
    try:
        body = response.json()
    except ValueError:
        return [f"HTTP {response.status_code}, not JSON: {response.text[:300]}"]
    found = []
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code not in CODES or code == "INTERNAL":
            found.append(f"code {code!r}: {error.get('message')}")
    return found


def reached_resolver(response: Any) -> bool:
    """The document got past validation: data came back, or a resolver raised (the error
    has a path)."""
    body = response.json()
    return body.get("data") is not None or any("path" in e for e in body.get("errors") or [])


def fuzz(operation: Any, mode: GenerationMode, tokens: AdminTokens) -> tuple[list[str], int]:
    """Run one operation's examples of one mode: (problems found, documents executed)."""
    found: list[str] = []
    executed = [0]

    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {tokens.token()}"})
        problems = problems_of(response)
        if problems:
            found.append(f"{case.body}\n    -> {problems}")
        elif reached_resolver(response):
            executed[0] += 1

    run()
    return found, executed[0]


def test_no_operation_of_the_schema_gives_a_server_error(engine):
    with graphql_client(engine) as api:
        tokens = AdminTokens(engine, api.token)
        schema = schemathesis.graphql.from_asgi(
            "/graphql", api.client.app, headers={"Authorization": f"Bearer {api.token}"}
        )
        operations = sorted((r.ok() for r in schema.get_all_operations()), key=lambda o: o.label)
        assert len(operations) > 40, [o.label for o in operations]
        failures: dict[str, list[str]] = {}
        executed: set[str] = set()
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                found, ran = fuzz(operation, mode, tokens)
                if found:
                    failures[f"{operation.label} ({mode.value})"] = found
                if ran:
                    executed.add(operation.label)

    assert not failures, "\n".join(
        f"{label}:\n  " + "\n  ".join(cases[:3]) for label, cases in failures.items()
    )
    # The run got past validation into every operation's resolver at least once.
    assert executed == {o.label for o in operations}, sorted(
        {o.label for o in operations} - executed
    )
