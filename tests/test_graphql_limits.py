"""The API's safety limits: every abuse gets a LIMIT_EXCEEDED answer and changes nothing.

Defaults: depth 12, aliases 30, tokens 5,000, page size 200 (50 on a nested connection),
request body 1 MiB, no batching, no mutation over GET; ``GUANXI_INTROSPECTION=0`` turns
off introspection, the IDE and "Did you mean" suggestions. Every operation but ``login``
needs a token; an internal error shows an error id, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import strawberry

from guanxi.engine import hookimpl
from guanxi.graphql.context import Context
from guanxi.graphql.limits import Limits

from .graphql_client import ADMIN, ADMIN_PASSWORD, code, graphql_client

LIMIT = "LIMIT_EXCEEDED"
#: Object fields down the expo entities: Fair -> its bookings -> a booking's Fair -> ...
CYCLE = ["expoBookings", "nodes", "fair"]
LEAF = {"fairs": "totalCount", "expoBookings": "totalCount", "nodes": "id", "fair": "name"}
CREATE_FAIR = 'createFair(input: {name: "Chengdu spring"}) { id }'


def nested(depth: int, head: tuple[str, ...] = ("fairs", "nodes")) -> str:
    """A selection whose deepest field is ``depth`` levels below its root field (root = 0):
    ``fairs { nodes { expoBookings { nodes { fair { expoBookings ... } } } } }``."""
    names = list(head)
    while len(names) <= depth:
        names += CYCLE
    names = names[:depth]
    selection = LEAF[names[-1]]
    for name in reversed(names):
        selection = f"{name} {{ {selection} }}"
    return selection


def deep_query(depth: int) -> str:
    return "{ " + nested(depth) + " }"


class Probe:
    """A test plugin contributing a query field that fails with an unexpected error."""

    name = "limits_probe"

    @hookimpl
    def register_graphql(self, schema: Any) -> None:
        def boom() -> bool:
            raise RuntimeError("secret detail: /srv/guanxi/db password=hunter2")

        schema.query("boom", strawberry.field(resolver=boom))


@pytest.fixture
def engine(make_engine, test_plugin):
    return make_engine(test_plugin("expo"), Probe())


@pytest.fixture
def api(engine):
    with graphql_client(engine) as api:
        yield api


@pytest.fixture
def list_calls(engine, monkeypatch):
    """Calls of the record API's list (each top-level list query makes one)."""
    calls: list[str] = []
    original = engine.records.list

    def spy(entity: str, **kwargs: Any) -> Any:
        calls.append(entity)
        return original(entity, **kwargs)

    monkeypatch.setattr(engine.records, "list", spy)
    return calls


def fairs_stored(engine) -> int:
    return engine.records.list("Fair").total_count


def refused(response, status: int = 200) -> dict[str, Any]:
    """The answer of a refused request: the status, no data, LIMIT_EXCEEDED first."""
    assert response.status_code == status, response.text
    result = response.json()
    assert result.get("data") is None, result
    assert code(result) == LIMIT, result
    return result


# -- query shape ------------------------------------------------------------------------------
def test_a_query_deeper_than_12_is_refused_before_any_resolver_runs(api, list_calls):
    assert "errors" not in api.gql(deep_query(12))
    assert list_calls == ["Fair"]
    list_calls.clear()
    result = refused(api.post(json={"query": deep_query(13)}))
    assert "depth of 12" in result["errors"][0]["message"]
    assert list_calls == []


def test_a_deep_mutation_is_refused_and_writes_nothing(api, engine):
    deep = nested(13, head=('createFair(input: {name: "Deep"})',))
    refused(api.post(json={"query": f"mutation {{ {deep} }}"}))
    assert fairs_stored(engine) == 0


def test_more_than_30_aliases_are_refused_and_nothing_is_written(api, engine):
    thirty = " ".join(f"a{i}: __typename" for i in range(30))
    assert "errors" not in api.gql("{ " + thirty + " }")
    creates = " ".join(f'f{i}: createFair(input: {{name: "Fair {i}"}}) {{ id }}' for i in range(31))
    result = refused(api.post(json={"query": "mutation { " + creates + " }"}))
    assert "31 aliases" in result["errors"][0]["message"]
    assert fairs_stored(engine) == 0


def test_more_than_5000_tokens_are_refused_and_nothing_is_written(api, engine):
    # `{ createFair(...) { id id id ... } }`: repeating a field is valid GraphQL
    ids = " ".join(["id"] * 5000)
    result = refused(
        api.post(json={"query": f'mutation {{ createFair(input: {{name: "X"}}) {{ {ids} }} }}'})
    )
    assert "5000 tokens" in result["errors"][0]["message"]
    assert fairs_stored(engine) == 0


# -- request shape ----------------------------------------------------------------------------
def test_a_body_over_1_mib_is_refused_with_413_and_nothing_is_written(api, engine):
    query = "mutation($n: String!) { createFair(input: {name: $n}) { id } }"
    padding = "x" * (1024 * 1024)
    result = refused(
        api.post(json={"query": query, "variables": {"n": "F", "pad": padding}}), status=413
    )
    assert "1048576 bytes" in result["errors"][0]["message"]
    assert fairs_stored(engine) == 0


def test_a_body_over_1_mib_without_a_declared_length_is_refused_too(api, engine):
    query = b'{"query": "mutation { createFair(input: {name: \\"F\\"}) { id } }", "x": "'
    chunks = [query, *[b"y" * 65536] * 17, b'"}']  # 1.06 MiB, sent chunked

    refused(
        api.post(content=iter(chunks), headers={"Content-Type": "application/json"}), status=413
    )
    assert fairs_stored(engine) == 0


def test_a_batched_request_is_refused_and_nothing_is_written(api, engine):
    batch = [{"query": f"mutation {{ {CREATE_FAIR} }}"}, {"query": "{ me { id } }"}]
    result = refused(api.post(json=batch), status=400)
    assert "batched" in result["errors"][0]["message"]
    assert fairs_stored(engine) == 0


def test_a_mutation_over_get_is_refused_with_405_limit_exceeded_and_writes_nothing(api, engine):
    response = api.get(params={"query": f"mutation {{ {CREATE_FAIR} }}"})
    refused(response, status=405)
    assert response.headers["allow"] == "POST"
    assert fairs_stored(engine) == 0


def test_a_query_over_get_is_answered(api):
    response = api.get(params={"query": "{ me { username } }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"username": ADMIN}}}


# -- page sizes -------------------------------------------------------------------------------
def test_first_over_200_on_a_list_is_refused_before_the_database_is_asked(api, list_calls):
    assert "errors" not in api.gql("{ fairs(first: 200) { totalCount } }")
    list_calls.clear()
    result = refused(api.post(json={"query": "{ fairs(first: 201) { totalCount } }"}))
    assert result["errors"][0]["path"] == ["fairs"]
    assert list_calls == []


def test_first_over_50_on_a_nested_connection_is_refused(api, engine, monkeypatch):
    fair = engine.records.create("Fair", {"name": "Chengdu spring"})
    engine.records.create("ExpoBooking", {"title": "Booth A", "fair": fair.id})
    query = "{ fairs { nodes { expoBookings(first: %d) { totalCount } } } }"
    assert api.gql(query % 50) == {
        "data": {"fairs": {"nodes": [{"expoBookings": {"totalCount": 1}}]}}
    }

    loads: list[str] = []
    original = Context._load_reverse

    async def spy(self, *args: Any) -> Any:
        loads.append(args[1])
        return await original(self, *args)

    monkeypatch.setattr(Context, "_load_reverse", spy)
    result = refused(api.post(json={"query": query % 51}))
    assert result["errors"][0]["path"] == ["fairs", "nodes", 0, "expoBookings"]
    assert "50" in result["errors"][0]["message"]
    assert loads == []


# -- introspection, IDE, suggestions ----------------------------------------------------------
@pytest.fixture
def closed_api(engine):
    """The API as GUANXI_INTROSPECTION=0 serves it."""
    with graphql_client(engine, Limits(introspection=False)) as api:
        yield api


def test_limits_come_from_the_environment():
    assert Limits.from_env({}) == Limits()
    limits = Limits.from_env(
        {
            "GUANXI_MAX_DEPTH": "5",
            "GUANXI_MAX_ALIASES": "7",
            "GUANXI_MAX_TOKENS": "900",
            "GUANXI_MAX_BODY_BYTES": "4096",
            "GUANXI_INTROSPECTION": "0",
        }
    )
    assert limits == Limits(
        max_depth=5, max_aliases=7, max_tokens=900, max_body_bytes=4096, introspection=False
    )


@pytest.mark.parametrize(
    "query",
    [
        "{ __schema { queryType { name } } }",
        '{ __type(name: "Fair") { fields { name } } }',
        "{ ... on Query { __schema { types { name } } } }",
    ],
    ids=["schema", "type", "inline-fragment"],
)
def test_with_introspection_off_an_introspection_query_is_refused(closed_api, query):
    result = refused(closed_api.post(json={"query": query}))
    assert "introspection has been disabled" in result["errors"][0]["message"]


def test_with_introspection_off_the_ide_is_not_served(closed_api):
    response = closed_api.get(headers={"Accept": "text/html"}, token=None)
    assert response.status_code == 404
    assert "graphiql" not in response.text.lower()


def test_with_introspection_off_errors_suggest_no_field_names(api, closed_api):
    misspelt = ["{ fairz { totalCount } }", "{ fairs(frist: 3) { totalCount } }"]
    for query in misspelt:
        assert "Did you mean" in api.gql(query)["errors"][0]["message"]  # on: suggested
        result = closed_api.gql(query)
        assert code(result) == "VALIDATION"
        assert "Did you mean" not in result["errors"][0]["message"]


def test_with_introspection_on_a_browser_gets_graphiql(api):
    response = api.get(headers={"Accept": "text/html"}, token=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


def test_introspection_works_with_a_token_when_on(api):
    result = api.gql("{ __schema { queryType { name } } }")
    assert result == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


# -- tokens -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "{ fairs { totalCount } }",
        "{ me { username } }",
        "{ __schema { queryType { name } } }",
        '{ __type(name: "User") { fields { name } } }',
        "{ ... on Query { __schema { queryType { name } } } }",
        "query { ...login } fragment login on Query { __schema { queryType { name } } }",
        "query { __typename ...A } fragment A on Query { metadata { roles { name } } }",
        f"mutation {{ {CREATE_FAIR} }}",
        f'mutation {{ login(username: "{ADMIN}", password: "x") {{ token }} {CREATE_FAIR} }}',
    ],
    ids=[
        "list",
        "me",
        "schema",
        "type",
        "inline-fragment",
        "fragment-named-login",
        "fragment-spread",
        "mutation",
        "login-with-another-mutation",
    ],
)
def test_every_operation_but_login_needs_a_token(api, engine, query):
    for token in (None, "not-a-token"):
        result = api.gql(query, token=token)
        assert result["data"] is None, result
        assert code(result) == "UNAUTHENTICATED", result
    assert fairs_stored(engine) == 0


def test_login_needs_no_token(api):
    query = 'mutation { login(username: "%s", password: "%s") { token } }'
    result = api.gql(query % (ADMIN, ADMIN_PASSWORD), token=None)
    token = result["data"]["login"]["token"]
    assert api.gql("{ me { username } }", token=token)["data"]["me"]["username"] == ADMIN


# -- errors -----------------------------------------------------------------------------------
def test_an_internal_error_shows_an_error_id_and_no_traceback(api, caplog):
    with caplog.at_level(logging.ERROR, logger="guanxi.graphql"):
        response = api.post(json={"query": "{ boom }"})
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "INTERNAL"
    error_id = error["extensions"]["errorId"]
    assert error["message"] == f"internal error {error_id}: the server log has the details"
    for leak in ("secret detail", "hunter2", "Traceback", "RuntimeError", ".py"):
        assert leak not in response.text
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the log keeps the traceback


def test_a_syntax_error_is_a_coded_validation_error(api):
    result = api.gql("{ fairs { ")
    assert code(result) == "VALIDATION"
    assert result["errors"][0]["message"].startswith("Syntax Error")


def test_a_bad_value_that_mentions_tokens_is_not_mistaken_for_a_limit(api):
    result = api.gql(
        "query($n: Int) { fairs(first: $n) { totalCount } }", {"n": "more than 9 tokens"}
    )
    assert code(result) == "VALIDATION"


# -- configurable -----------------------------------------------------------------------------
def test_the_limits_are_configurable(engine):
    limits = Limits(max_depth=3, max_aliases=2, max_tokens=40, max_body_bytes=2000)
    with graphql_client(engine, limits) as api:
        assert "errors" not in api.gql(deep_query(3))
        result = refused(api.post(json={"query": deep_query(4)}))
        assert "depth of 3" in result["errors"][0]["message"]
        assert "errors" not in api.gql("{ a: __typename b: __typename }")
        refused(api.post(json={"query": "{ a: __typename b: __typename c: __typename }"}))
        refused(api.post(json={"query": "{ " + " ".join(["__typename"] * 41) + " }"}))
        refused(api.post(json={"query": "{ me { id } }", "variables": {"x": "y" * 2000}}), 413)
