"""Issue 6's "Done when": the demo's duplicate pair is found and merged over GraphQL.

The sales demo (``guanxi demo``'s data) has 金坛酒业有限公司, entered by a customer manager
of 华东, and 金坛酒业, entered again (knowingly) by one of 华南. The supervisor of the
first team cannot merge a customer of another team; the admin lists the duplicate groups,
merges the pair and finds every record of the merged customer under the survivor. SQLite
and PostgreSQL.
"""

from __future__ import annotations

from guanxi.plugins.sales import demo as sales_demo

from .conftest import Clock
from .graphql_client import graphql_client

GROUPS = """{ duplicates(entity: "Customer", first: 10) {
  score records { id name } keys { key } } }"""
MERGE = """mutation($survivor: ID!, $others: [ID!]!) {
  mergeRecords(entity: "Customer", survivorId: $survivor, otherIds: $others) {
    survivorId mergedIds repointed { entity field count } } }"""
RELATED = """query($id: ID!) { customer(id: $id) { name
  contacts { totalCount } opportunities { totalCount } activities { totalCount } } }"""


def ok(result: dict) -> dict:
    assert "errors" not in result, result["errors"]
    return result["data"]


def test_the_demos_duplicate_pair_is_found_and_merged_over_graphql(make_engine):
    engine = make_engine(use_entry_points=True, plugins=("sales",), clock=Clock())
    logins = sales_demo.demo(engine, "small", 1, lambda done, total=None: None)
    with graphql_client(engine) as api:
        (group,) = ok(api.gql(GROUPS))["duplicates"]  # the demo holds exactly one pair
        names = {r["name"]: r["id"] for r in group["records"]}
        assert set(names) == {"金坛酒业有限公司", "金坛酒业"}
        assert {k["key"] for k in group["keys"]} >= {"name"}
        survivor, other = names["金坛酒业有限公司"], names["金坛酒业"]
        before = [ok(api.gql(RELATED, {"id": i}))["customer"] for i in (survivor, other)]

        # the survivor's team supervisor does not reach the other team's customer
        owner = engine.records.get("Customer", int(survivor)).owner
        team = engine.records.get("User", owner).team
        (supervisor,) = [
            row["username"]
            for row in logins
            if row["role"] == "sales_supervisor"
            and engine.records.get("User", engine.auth.user_id(row["username"])).team == team
        ]
        token = engine.auth.issue_token(engine.auth.user_id(supervisor)).token
        refused = api.gql(MERGE, {"survivor": survivor, "others": [other]}, token=token)
        assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        merged = ok(api.gql(MERGE, {"survivor": survivor, "others": [other]}))  # the admin
        assert merged["mergeRecords"]["mergedIds"] == [other]

        after = ok(api.gql(RELATED, {"id": survivor}))["customer"]
        for key in ("contacts", "opportunities", "activities"):
            assert after[key]["totalCount"] == sum(b[key]["totalCount"] for b in before)
        assert ok(api.gql(GROUPS))["duplicates"] == []
        assert ok(api.gql("query($id: ID!) { customer(id: $id) { id } }", {"id": other})) == {
            "customer": None
        }
