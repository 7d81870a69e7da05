"""Issue 5's "Done when", second half: a salesperson's months through the GraphQL API.

One story over HTTP (the app ``guanxi serve`` runs, driven in-process so the test owns the
clock), with each person's own token: a customer manager finds a pool customer masked,
claims it, logs a visit with a follow-up date and wins a deal whose contract has two
instalments; finance confirms one payment; time passes and the worker runs; the
notifications, the customer's timeline, the analytics and the pool's return rule give the
values worked out by hand in the comments. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from guanxi.engine.worker import worker_pass

from .conftest import T0
from .graphql_client import graphql_client

PEOPLE = {
    "li": ("customer_manager", "East"),
    "wang": ("sales_supervisor", "East"),
    "zhao": ("customer_manager", "South"),
    "cai": ("finance", None),
}
FIRE = (
    "mutation($id: ID!, $t: String!) {"
    ' fireTransition(entity: "Opportunity", id: $id, trigger: $t) { state } }'
)


class Desk:
    """The API with everyone's tokens, and the clock."""

    def __init__(self, api: Any, engine: Any, clock: Any, tokens: dict[str, str]) -> None:
        self.api, self.engine, self.clock, self.tokens = api, engine, clock, tokens

    def __call__(self, who: str, query: str, variables: dict | None = None) -> dict[str, Any]:
        result = self.api.gql(query, variables, token=self.tokens[who])
        assert "errors" not in result, result["errors"]
        return result["data"]

    def days_later(self, days: int) -> None:
        """Move the clock and let the worker do one pass (timers, jobs, outbox)."""
        self.clock.advance(days=days)
        worker_pass(self.engine, self.engine.now())

    def inbox(self, who: str) -> list[str]:
        found = self(who, "{ notifications(first: 50) { nodes { template } } }")
        return sorted(n["template"] for n in found["notifications"]["nodes"])


@pytest.fixture
def desk(make_engine, clock):
    engine = make_engine(use_entry_points=True, plugins=("sales",), clock=clock)
    with graphql_client(engine) as api:
        for team in ("East", "South"):
            engine.records.create("Team", {"name": team})
        tokens = {"root": api.token}
        for name, (role, team) in PEOPLE.items():
            user = engine.auth.create_user(name, roles=[role], team=team)
            tokens[name] = engine.auth.issue_token(user.id, days=365).token
        yield Desk(api, engine, clock, tokens)


def test_a_pool_customer_claimed_worked_won_paid_and_reported(desk):
    # an imported customer nobody owns: in the pool, its numbers masked for li
    pooled = desk.engine.records.create(
        "Customer", {"name": "宁波海鲜酒楼有限公司", "phone": "13800138000", "region": "East"}
    )
    desk.engine.records.create(
        "Contact", {"customer": pooled.id, "name": "陈经理", "mobile": "13912345678"}
    )
    query = "query($id: ID!) { customer(id: $id) { phone contacts { nodes { mobile } } } }"
    assert desk("li", query, {"id": pooled.id})["customer"] == {
        "phone": "138****8000",
        "contacts": {"nodes": [{"mobile": "139****5678"}]},
    }
    # a colleague of another team learns who works it, nothing more
    (match,) = desk("zhao", '{ lookupCustomer(name: "宁波海鲜酒楼") { id owner inPool } }')[
        "lookupCustomer"
    ]
    assert match == {"id": str(pooled.id), "owner": None, "inPool": True}

    desk("li", "mutation($id: ID!) { claimCustomer(id: $id) { id } }", {"id": pooled.id})
    assert desk("li", query, {"id": pooled.id})["customer"]["phone"] == "13800138000"
    (match,) = desk("zhao", '{ lookupCustomer(phone: "138 0013 8000") { owner team inPool } }')[
        "lookupCustomer"
    ]
    assert match == {"owner": "li", "team": "East", "inPool": False}

    # a visit today, following up in 3 days; a deal signed for 10,000
    contact_id = desk("li", "{ contacts { nodes { id } } }")["contacts"]["nodes"][0]["id"]
    desk(
        "li",
        "mutation($v: ActivityCreateInput!) { createActivity(input: $v) { id } }",
        {
            "v": {
                "customerId": str(pooled.id),
                "kind": "visit",
                "subject": "First visit",
                "nextFollowUpAt": (T0 + timedelta(days=3)).isoformat(),
            }
        },
    )
    deal = desk(
        "li",
        "mutation($v: OpportunityCreateInput!) { createOpportunity(input: $v) { id } }",
        {
            "v": {
                "title": "Banquet hall ads",
                "customerId": str(pooled.id),
                "contactId": contact_id,
                "amount": {"amount": "10000"},
                "expectedCloseDate": (T0 + timedelta(days=30)).date().isoformat(),
            }
        },
    )["createOpportunity"]["id"]
    for trigger in ("schedule_visit", "propose", "sign"):
        desk("li", FIRE, {"id": deal, "t": trigger})
    contract = desk("li", "{ contracts { nodes { id } } }")["contracts"]["nodes"][0]["id"]
    desk(
        "li",
        "mutation($id: ID!, $v: ContractUpdateInput!) { updateContract(id: $id, input: $v)"
        " { id } }",
        {
            "id": contract,
            "v": {
                "instalments": [
                    {
                        "dueDate": (T0 + timedelta(days=10)).date().isoformat(),
                        "amount": {"amount": "4000"},
                    },
                    {
                        "dueDate": (T0 + timedelta(days=40)).date().isoformat(),
                        "amount": {"amount": "6000"},
                    },
                ]
            },
        },
    )
    # finance confirms 5,000 on day 5: 4,000 pays the first instalment, 1,000 the second
    desk.clock.advance(days=5)
    desk(
        "cai",
        "mutation($v: PaymentCreateInput!) { createPayment(input: $v) { id } }",
        {
            "v": {
                "customerId": str(pooled.id),
                "contractId": contract,
                "amount": {"amount": "5000"},
                "paidOn": (T0 + timedelta(days=5)).date().isoformat(),
                "confirmed": True,
            }
        },
    )
    found = desk(
        "li",
        "query($id: ID!) { contract(id: $id) { received { amount } receivable { amount }"
        " instalments { nodes { paidAmount { amount } status } } } }",
        {"id": contract},
    )["contract"]
    assert found["received"] == {"amount": "5000.00"}
    assert found["receivable"] == {"amount": "5000.00"}
    assert [(i["paidAmount"]["amount"], i["status"]) for i in found["instalments"]["nodes"]] == [
        ("4000.00", "paid"),
        ("1000.00", "pending"),
    ]

    # day 50: the follow-up (day 3) and the second instalment (day 40) are overdue
    desk.days_later(45)
    assert desk.inbox("li") == ["sales.follow_up_overdue", "sales.instalment_overdue"]
    assert desk.inbox("cai") == ["sales.instalment_overdue"]
    desk.days_later(1)  # once per idle period, not once per run
    assert desk.inbox("li") == ["sales.follow_up_overdue", "sales.instalment_overdue"]

    # receivables as finance: 5,000 left, 10 days overdue
    receivables = desk(
        "cai",
        "{ analytics { sales { receivables { customers { customerId total overdue0To30"
        " overdue31To60 } } } } }",
    )["analytics"]["sales"]["receivables"]["customers"]
    assert receivables == [
        {
            "customerId": str(pooled.id),
            "total": "5000.00",
            "overdue0To30": "5000.00",
            "overdue31To60": "0.00",
        }
    ]
    # li's workbench over the whole story: 1 activity, 1 contract signed, 5,000 received
    board = desk(
        "li",
        "query($f: Date!, $t: Date!) { analytics { sales { dashboard(from: $f, to: $t) {"
        " activities contractsSigned paymentsReceived { amount currency }"
        " todos { overdueFollowUps pendingInstalments } } } } }",
        {"f": T0.date().isoformat(), "t": (T0 + timedelta(days=51)).date().isoformat()},
    )["analytics"]["sales"]["dashboard"]
    assert board == {
        "activities": 1,
        "contractsSigned": 1,
        "paymentsReceived": [{"amount": "5000.00", "currency": "CNY"}],
        "todos": {"overdueFollowUps": 1, "pendingInstalments": 1},
    }
    # the timeline: newest first, every source
    timeline = desk(
        "li",
        "query($id: ID!) { customer(id: $id) { timeline(first: 20) { nodes { kind title } } } }",
        {"id": pooled.id},
    )["customer"]["timeline"]["nodes"]
    kinds = [entry["kind"] for entry in timeline]
    assert kinds[0] == "payment"
    assert {"activity", "workflow", "contract", "payment"} <= set(kinds)


def test_an_idle_claimed_customer_is_announced_then_returned_to_the_pool(desk):
    customer = desk.engine.records.create("Customer", {"name": "Idle Brewery"})
    desk("zhao", "mutation($id: ID!) { claimCustomer(id: $id) { id } }", {"id": customer.id})
    owner = "query($id: ID!) { customer(id: $id) { owner { username } } }"
    # default rule: 90 idle days return it, with a notice 7 days before
    desk.days_later(82)
    assert desk.inbox("zhao") == []
    desk.days_later(1)
    assert desk.inbox("zhao") == ["sales.pool_return_notice"]
    assert desk("zhao", owner, {"id": customer.id})["customer"]["owner"] == {"username": "zhao"}
    desk.days_later(7)
    assert desk.inbox("zhao") == ["sales.pool_return_notice", "sales.pool_returned"]
    assert desk("li", owner, {"id": customer.id})["customer"]["owner"] is None
