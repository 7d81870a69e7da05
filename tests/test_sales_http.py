"""Issue 5's "Done when", over real HTTP against ``guanxi serve`` with the sales plugin.

Users of two sales teams work with their own tokens: a customer manager creates a customer
with two contacts and an opportunity and moves it through the whole pipeline; the
refusals (a proposal without an amount, a loss without a reason, another team's manager,
a duplicate customer spelt differently) carry their codes; the team's supervisor sees the
records and reopens a lost deal. Runs on SQLite and, with GUANXI_TEST_POSTGRES_URL, on
PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .test_serve_e2e import Api, command, serving

#: username -> (role, team)
USERS = {
    "wang": ("sales_supervisor", "East"),
    "li": ("customer_manager", "East"),
    "zhao": ("customer_manager", "South"),
    "qian": ("sales_supervisor", "South"),
}
OPPORTUNITY = (
    "id stage probability amount { amount currency } owner { username }"
    " history { trigger fromState toState actor { username } }"
)
FIRE = (
    "mutation($id: ID!, $t: String!, $p: JSON) {"
    ' fireTransition(entity: "Opportunity", id: $id, trigger: $t, payload: $p) { state } }'
)


@contextmanager
def sales_server(tmp_path: Path, database_url: str) -> Iterator[tuple[httpx.Client, Callable]]:
    """``guanxi serve --worker`` with the sales plugin on a fresh home; yields the HTTP
    client and a function running the ``guanxi`` command in that home."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "GUANXI_HOME": str(home),
        "GUANXI_DATABASE_URL": database_url,
        "GUANXI_PLUGINS": "sales",
        "COLUMNS": "200",
    }

    guanxi = command(home, env)
    guanxi("init")
    with serving(home, env, tmp_path / "serve.log") as http:
        yield http, guanxi


@pytest.fixture
def people(tmp_path, database_url) -> Iterator[dict[str, Api]]:
    """The admin and the users of USERS, each an Api with their own token."""
    with sales_server(tmp_path, database_url) as (http, guanxi):

        def token(name: str) -> str:
            return guanxi("token", name, "--days", "1").strip().splitlines()[-1]

        guanxi("user", "add", "root", "--role", "admin")
        admin = Api(http, token("root"))
        for team in ("East", "South"):
            admin("mutation($n: String!) { createTeam(input: {name: $n}) { id } }", {"n": team})
        for name, (role, team) in USERS.items():
            guanxi("user", "add", name, "--role", role, "--team", team)
        yield {"root": admin, **{name: Api(http, token(name)) for name in USERS}}


def create(api: Api, entity: str, values: dict[str, Any], fields: str = "id") -> dict[str, Any]:
    mutation = f"create{entity}"
    return api(
        f"mutation($v: {entity}CreateInput!) {{ {mutation}(input: $v) {{ {fields} }} }}",
        {"v": values},
    )[mutation]


def test_a_customer_manager_works_a_deal_from_lead_to_satisfied_customer(people):
    li = people["li"]
    customer = create(li, "Customer", {"name": "上海鼎丰酒业有限公司", "region": "East"})
    contacts = [
        create(li, "Contact", {"customerId": customer["id"], "name": name, "mobile": mobile})
        for name, mobile in (("周经理", "13800000001"), ("吴总", "13800000002"))
    ]
    deal = create(
        li,
        "Opportunity",
        {"title": "2027 subscriptions", "customerId": customer["id"]},
        OPPORTUNITY,
    )
    assert (deal["stage"], deal["probability"], deal["owner"]) == (
        "lead",
        "0.10",
        {"username": "li"},
    )

    li(FIRE, {"id": deal["id"], "t": "schedule_visit"})
    # proposing needs an amount: VALIDATION naming the field, and nothing moves
    refused = li.raw(FIRE, {"id": deal["id"], "t": "propose"})
    extensions = refused["errors"][0]["extensions"]
    assert (extensions["code"], extensions["field"]) == ("VALIDATION", "amount")
    assert {p["field"] for p in extensions["problems"]} == {
        "amount",
        "expectedCloseDate",
        "contactId",
    }
    li(
        "mutation($id: ID!, $v: OpportunityUpdateInput!) { updateOpportunity(id: $id, input: $v)"
        " { id } }",
        {
            "id": deal["id"],
            "v": {
                "amount": {"amount": "36000"},
                "expectedCloseDate": "2027-03-31",
                "contactId": contacts[0]["id"],
            },
        },
    )
    for trigger in ("propose", "sign", "deliver"):
        li(FIRE, {"id": deal["id"], "t": trigger})

    found = li(
        "query($id: ID!) { opportunity(id: $id) {"
        f" {OPPORTUNITY} contracts {{ nodes {{ number status amount {{ amount }}"
        " customer { name } owner { username } } } } }",
        {"id": deal["id"]},
    )["opportunity"]
    assert found["stage"] == "satisfaction"
    assert [(e["trigger"], e["fromState"], e["toState"]) for e in found["history"]] == [
        (None, None, "lead"),
        ("schedule_visit", "lead", "visit"),
        ("propose", "visit", "proposal"),
        ("sign", "proposal", "contract"),
        ("deliver", "contract", "satisfaction"),
    ]
    assert {e["actor"]["username"] for e in found["history"]} == {"li"}
    (contract,) = found["contracts"]["nodes"]
    assert contract["status"] == "active"
    assert contract["amount"] == {"amount": "36000.00"}
    assert contract["customer"] == {"name": "上海鼎丰酒业有限公司"}
    assert contract["owner"] == {"username": "li"}


def test_teams_see_only_their_own_deals_and_the_supervisor_reopens_a_lost_one(people):
    li, zhao, wang, qian = (people[n] for n in ("li", "zhao", "wang", "qian"))
    customer = create(li, "Customer", {"name": "杭州酒业有限公司", "phone": "0571-8888 0000"})
    deal = create(li, "Opportunity", {"title": "Booth 2027", "customerId": customer["id"]})

    # another team's manager and supervisor neither see nor change li's records
    for outsider in (zhao, qian):
        assert outsider("{ customers { totalCount } opportunities { totalCount } }") == {
            "customers": {"totalCount": 0},
            "opportunities": {"totalCount": 0},
        }
        code, _ = outsider.refused(FIRE, {"id": deal["id"], "t": "schedule_visit"})
        assert code == "NOT_FOUND"
        code, _ = outsider.refused(
            'mutation($id: ID!) { updateCustomer(id: $id, input: {region: "x"}) { id } }',
            {"id": customer["id"]},
        )
        assert code == "NOT_FOUND"

    # losing needs a reason
    code, message = li.refused(FIRE, {"id": deal["id"], "t": "lose"})
    assert code == "VALIDATION" and "reason" in message, message
    li(FIRE, {"id": deal["id"], "t": "lose", "p": {"reason": "price"}})

    # the customer manager may not reopen; the team's supervisor sees the deal and may
    code, message = li.refused(FIRE, {"id": deal["id"], "t": "reopen"})
    assert code == "INVALID_TRANSITION" and "sales_supervisor" in message, message
    assert wang("{ opportunities { nodes { title stage lostReason } } }") == {
        "opportunities": {
            "nodes": [{"title": "Booth 2027", "stage": "lost", "lostReason": "price"}]
        }
    }
    assert wang(FIRE, {"id": deal["id"], "t": "reopen"}) == {"fireTransition": {"state": "lead"}}
    assert li(
        "query($id: ID!) { opportunity(id: $id) { stage lostReason } }", {"id": deal["id"]}
    ) == {"opportunity": {"stage": "lead", "lostReason": None}}


def test_a_customer_spelt_another_way_is_refused_as_a_duplicate(people):
    li, zhao = people["li"], people["zhao"]
    first = create(li, "Customer", {"name": "成都XX酒业有限公司", "phone": "028-8765 4321"})
    result = zhao.raw(
        'mutation { createCustomer(input: {name: "成都ＸＸ酒业"}) { id } }'  # full-width, no suffix
    )
    error = result["errors"][0]
    assert error["extensions"]["code"] == "CONFLICT"
    (candidate,) = error["extensions"]["candidates"]
    assert str(candidate["id"]) == first["id"]
    assert candidate["owner"] == "li"
    # sent knowingly, it is created
    again = zhao(
        'mutation { createCustomer(input: {name: "成都ＸＸ酒业"}, allowDuplicate: true) { id } }'
    )
    assert again["createCustomer"]["id"] != first["id"]
