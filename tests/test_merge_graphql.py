"""``duplicates`` and ``mergeRecords`` over GraphQL, with real tokens of real users.

The demo's duplicate pair - "XX酒业有限公司" and "XX酒业", the second saved with
``allowDuplicate`` - is found by ``duplicates(entity: "Customer")`` and merged over HTTP;
errors carry their ``extensions.code`` and change nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from guanxi.plugins import sales

from .graphql_client import code, graphql_client

GROUPS = """query($first: Int) {
  duplicates(entity: "Customer", first: $first) {
    entity score
    records { id name ownerId ownerName }
    keys { key fields value recordIds }
  }
}"""
MERGE = """mutation($survivor: ID!, $others: [ID!]!) {
  mergeRecords(entity: "Customer", survivorId: $survivor, otherIds: $others) {
    entity survivorId mergedIds filled membersAdded survivor
    repointed { entity field count }
  }
}"""
CREATE = """mutation($input: CustomerCreateInput!, $allow: Boolean) {
  createCustomer(input: $input, allowDuplicate: $allow) { id }
}"""


class Demo:
    """The demo's pair, created over GraphQL by two customer managers of one team, each
    with a contact and an opportunity; a supervisor and a manager of another team."""

    def __init__(self, api) -> None:
        self.api = api
        engine = api.engine
        engine.records.create("Team", {"name": "East"})
        engine.records.create("Team", {"name": "West"})
        self.tokens = {}
        self.ids = {}
        for name, role, team in (
            ("li", "customer_manager", "East"),
            ("wang", "customer_manager", "East"),
            ("zhao", "customer_manager", "West"),
            ("qian", "executive", None),
        ):
            self.ids[name] = engine.auth.create_user(name, roles=[role], team=team).id
            self.tokens[name] = engine.auth.issue_token(self.ids[name]).token
        self.survivor = self.customer("li", {"name": "XX酒业有限公司", "region": "四川"})
        self.other = self.customer(
            "wang", {"name": "XX酒业", "phone": "028-8888 6666"}, allow_duplicate=True
        )
        self.contacts = [self.contact("li", self.survivor), self.contact("wang", self.other)]
        self.opportunity = self.data(
            api.gql(
                """mutation($c: ID!) {
                  createOpportunity(input: {title: "2027 ads", customerId: $c}) { id }
                }""",
                {"c": self.other},
                token=self.tokens["wang"],
            )
        )["createOpportunity"]["id"]

    @staticmethod
    def data(result: dict[str, Any]) -> dict[str, Any]:
        assert "errors" not in result, result
        return result["data"]

    def customer(self, who: str, values: dict[str, Any], allow_duplicate: bool = False) -> str:
        variables = {"input": values, "allow": allow_duplicate}
        answer = self.api.gql(CREATE, variables, token=self.tokens[who])
        return self.data(answer)["createCustomer"]["id"]

    def contact(self, who: str, customer: str) -> str:
        answer = self.api.gql(
            'mutation($c: ID!) { createContact(input: {customerId: $c, name: "Zhang"}) { id } }',
            {"c": customer},
            token=self.tokens[who],
        )
        return self.data(answer)["createContact"]["id"]

    def merge(self, token: Any = None, survivor: str | None = None, others: Any = None) -> dict:
        variables = {"survivor": survivor or self.survivor, "others": others or [self.other]}
        if token is None:
            return self.api.gql(MERGE, variables)
        return self.api.gql(MERGE, variables, token=token)

    def state(self) -> dict[str, Any]:
        """What the admin sees of both customers and everything pointing at them."""
        return self.data(
            self.api.gql(
                """{
                  customers(filter: {deleted: true}) { nodes { id version } }
                  live: customers { nodes { id version phone } }
                  contacts { nodes { id version customerId } }
                  opportunities { nodes { id version customerId stage } }
                }"""
            )
        )


@pytest.fixture
def demo(make_engine):
    engine = make_engine(sales)
    with graphql_client(engine) as api:
        yield Demo(api)


def test_duplicates_finds_the_demo_pair(demo):
    (group,) = demo.data(demo.api.gql(GROUPS))["duplicates"]
    assert group["entity"] == "Customer"
    assert group["records"] == [
        {
            "id": demo.survivor,
            "name": "XX酒业有限公司",
            "ownerId": str(demo.ids["li"]),
            "ownerName": "li",
        },
        {"id": demo.other, "name": "XX酒业", "ownerId": str(demo.ids["wang"]), "ownerName": "wang"},
    ]
    assert group["keys"] == [
        {
            "key": "name",
            "fields": ["name"],
            "value": "xx酒业",
            "recordIds": [demo.survivor, demo.other],
        }
    ]
    assert group["score"] == 0.5


def test_the_demo_pair_is_merged_over_graphql(demo):
    result = demo.data(demo.merge())["mergeRecords"]
    assert (result["entity"], result["survivorId"], result["mergedIds"]) == (
        "Customer",
        demo.survivor,
        [demo.other],
    )
    assert result["filled"] == ["phone"]
    assert result["membersAdded"] == 1  # wang, who owned the other, shares the survivor
    assert {(r["entity"], r["field"], r["count"]) for r in result["repointed"]} == {
        ("Contact", "customer", 1),
        ("Opportunity", "customer", 1),
    }
    survivor = result["survivor"]
    assert (survivor["id"], survivor["name"], survivor["phone"], survivor["region"]) == (
        int(demo.survivor),
        "XX酒业有限公司",
        "028-8888 6666",
        "四川",
    )
    assert survivor["ownerId"] == demo.ids["li"]


def test_after_the_merge_everything_points_at_the_survivor_and_the_other_is_in_the_bin(demo):
    demo.data(demo.merge())
    state = demo.state()
    assert [c["id"] for c in state["customers"]["nodes"]] == [demo.other]
    assert [c["id"] for c in state["live"]["nodes"]] == [demo.survivor]
    assert {c["customerId"] for c in state["contacts"]["nodes"]} == {demo.survivor}
    assert {o["customerId"] for o in state["opportunities"]["nodes"]} == {demo.survivor}
    assert demo.data(demo.api.gql(GROUPS))["duplicates"] == []


def test_the_other_can_be_restored_over_graphql(demo):
    demo.data(demo.merge())
    answer = demo.api.gql(
        "mutation($id: ID!) { restoreCustomer(id: $id) { id name } }", {"id": demo.other}
    )
    assert demo.data(answer)["restoreCustomer"] == {"id": demo.other, "name": "XX酒业"}


def test_first_limits_the_groups(demo):
    demo.customer("li", {"name": "Acme Co., Ltd."})
    demo.customer("li", {"name": "ACME"}, allow_duplicate=True)
    assert len(demo.data(demo.api.gql(GROUPS))["duplicates"]) == 2
    assert len(demo.data(demo.api.gql(GROUPS, {"first": 1}))["duplicates"]) == 1
    assert code(demo.api.gql(GROUPS, {"first": 100000})) == "LIMIT_EXCEEDED"


def test_a_caller_sees_only_groups_of_records_they_may_read(demo):
    answer = demo.api.gql(GROUPS, token=demo.tokens["li"])
    assert demo.data(answer)["duplicates"] == []


def test_a_reader_of_every_customer_sees_the_group_and_its_key_value(demo):
    (group,) = demo.data(demo.api.gql(GROUPS, token=demo.tokens["qian"]))["duplicates"]
    assert group["keys"][0]["value"] == "xx酒业"


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("who", "survivor", "others", "expected", "field"),
    [
        ("admin", None, ["999"], "NOT_FOUND", None),
        ("admin", "999", None, "NOT_FOUND", None),
        ("admin", None, ["survivor"], "VALIDATION", "otherIds"),
        ("admin", None, ["x"], "VALIDATION", "otherIds"),
        ("li", None, None, "NOT_FOUND", None),  # li cannot read wang's customer
        ("qian", None, None, "FORBIDDEN", None),  # reads all, updates nothing
        ("anonymous", None, None, "UNAUTHENTICATED", None),
    ],
)
def test_a_refused_merge_answers_its_code_and_changes_nothing(
    demo, who, survivor, others, expected, field
):
    before = demo.state()
    if others == ["survivor"]:
        others = [demo.survivor]
    token = {"admin": None, "anonymous": ""}.get(who, demo.tokens.get(who))
    answer = demo.merge(token=token, survivor=survivor, others=others)
    assert code(answer) == expected, answer
    assert answer["errors"][0].get("extensions", {}).get("field") == field
    assert demo.state() == before


def test_a_customer_manager_may_not_merge_even_their_own_customers(demo):
    twin = demo.customer("li", {"name": "XX 酒业 Ltd"}, allow_duplicate=True)
    before = demo.state()
    answer = demo.merge(token=demo.tokens["li"], others=[twin])
    assert code(answer) == "FORBIDDEN"
    assert "may not delete Customer" in answer["errors"][0]["message"]
    assert demo.state() == before


def test_an_unknown_entity_is_a_validation_error(demo):
    answer = demo.api.gql('{ duplicates(entity: "Nowhere") { score } }')
    assert code(answer) == "VALIDATION"
    assert "Nowhere" in answer["errors"][0]["message"]
