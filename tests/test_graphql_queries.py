"""Batching: a list with two levels of nested relations costs a number of SQL queries
that does not depend on how many records it lists (per-request DataLoaders)."""

from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from guanxi.graphql.app import build_app
from guanxi.graphql.limits import Limits

QUERY = """query($n: Int!) {
  expoBookings(first: $n) {
    totalCount
    nodes {
      title
      owner { username team { name } }
      fair { name expoBookings(first: 5) { totalCount nodes { title fair { name } } } }
    }
  }
}"""


class QueryCounter:
    """Counts the SELECT statements every connection of one engine sends."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def add(self, sql: str) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            with self.lock:
                self.count += 1

    def install(self, engine) -> None:
        counter = self

        @engine.db.on_connect(provider="sqlite")
        def _sqlite(db, connection):
            connection.set_trace_callback(counter.add)

        @engine.db.on_connect(provider="postgres")
        def _postgres(db, connection):
            import psycopg2.extensions

            class CountingCursor(psycopg2.extensions.cursor):
                def execute(self, sql, args=None):
                    counter.add(sql if isinstance(sql, str) else sql.decode())
                    return super().execute(sql, args)

            connection.cursor_factory = CountingCursor


@pytest.fixture
def setup(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), open=False)
    counter = QueryCounter()
    counter.install(engine)
    engine.open(migrate=True)
    team = engine.records.create("Team", {"name": "East"})
    users = [
        engine.records.create("User", {"username": f"u{i}", "roles": ["admin"], "team": team.id})
        for i in range(5)
    ]
    fairs = [engine.records.create("Fair", {"name": f"fair {i}"}) for i in range(7)]
    rows = [
        {"title": f"b{i:03}", "fair": fairs[i % 7].id, "owner": users[i % 5].id} for i in range(100)
    ]
    engine.records.create_many("ExpoBooking", rows)
    token = engine.auth.issue_token(users[0].id).token
    client = TestClient(build_app(engine, Limits()))
    return engine, client, token, counter


def queries_for(setup, n: int) -> int:
    engine, client, token, counter = setup
    counter.count = 0
    result = client.post(
        "/graphql",
        json={"query": QUERY, "variables": {"n": n}},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert "errors" not in result, result
    assert len(result["data"]["expoBookings"]["nodes"]) == n
    return counter.count


def test_nested_relations_cost_the_same_queries_for_10_and_100_records(setup):
    queries_for(setup, 1)  # the first request also records the token's last use
    assert queries_for(setup, 10) == queries_for(setup, 100)


def test_a_listing_with_nested_relations_takes_a_handful_of_queries(setup):
    assert queries_for(setup, 100) <= 12


def run(setup, query: str) -> tuple[dict, int]:
    engine, client, token, counter = setup
    counter.count = 0
    result = client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert "errors" not in result, result
    return result["data"], counter.count


def test_a_nested_connection_asked_only_for_its_total_loads_none_of_its_records(setup):
    run(setup, "{ fairs { totalCount } }")  # the token's last use is recorded once
    counts, counts_queries = run(setup, "{ fairs { nodes { expoBookings { totalCount } } } }")
    full, full_queries = run(
        setup, "{ fairs { nodes { expoBookings { totalCount nodes { title } } } } }"
    )
    totals = [fair["expoBookings"]["totalCount"] for fair in counts["fairs"]["nodes"]]
    assert totals == [fair["expoBookings"]["totalCount"] for fair in full["fairs"]["nodes"]]
    assert sorted(totals) == [14, 14, 14, 14, 14, 15, 15]
    assert counts_queries == full_queries - 1  # the records' query is not sent


def test_a_list_asked_only_for_its_total_and_typename_answers_both(setup):
    data, _ = run(setup, "{ expoBookings(first: 50) { totalCount __typename } }")
    assert data["expoBookings"] == {"totalCount": 100, "__typename": "ExpoBookingConnection"}


def test_a_fragment_on_a_connection_still_loads_its_records(setup):
    data, _ = run(
        setup,
        "fragment F on ExpoBookingConnection { nodes { title } } "
        "{ expoBookings(first: 3) { totalCount ...F } }",
    )
    assert data["expoBookings"]["totalCount"] == 100
    assert [n["title"] for n in data["expoBookings"]["nodes"]] == ["b000", "b001", "b002"]


def test_a_total_alone_still_checks_the_page_size(setup):
    engine, client, token, _ = setup
    result = client.post(
        "/graphql",
        json={"query": "{ fairs { nodes { expoBookings(first: -1) { totalCount } } } }"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert result["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_a_list_not_asked_for_its_total_does_not_count(setup):
    run(setup, "{ fairs { totalCount } }")  # the token's last use is recorded once
    _, without = run(setup, "{ expoBookings(first: 10) { nodes { title } } }")
    data, counted = run(setup, "{ expoBookings(first: 10) { totalCount nodes { title } } }")
    assert data["expoBookings"]["totalCount"] == 100
    assert counted == without + 1


def test_a_fragment_may_ask_for_the_total(setup):
    data, _ = run(
        setup,
        "fragment F on ExpoBookingConnection { totalCount } "
        "{ expoBookings(first: 1) { ...F nodes { title } } }",
    )
    assert data["expoBookings"]["totalCount"] == 100
