"""Sales analytics, ``analytics { sales { funnel forecast performance receivables dashboard } }``,
over GraphQL against a small data set built by hand.

The installation's zone is Asia/Shanghai (UTC+8): times below are stored UTC, and a time
after 16:00 UTC falls on the next local day - which the figures must respect. People: li
and wang, customer managers of team East, and their supervisor chen; zhao, customer manager
of West, and its supervisor qian; boss, an executive; fin, finance.

The story (UTC; "→" fires a transition, each deal moving from stage to stage):

====================  ======================================================================
2027-01-02 09:00      C4 "Pool Tea" (West) created by the system: in the pool, no owner
2027-01-03 09:00      C1 "Sichuan Liquor" (li, East), C2 "Shanghai Foods" (wang, East)
2027-01-04 09:00      O1 (li, C1, 10000 CNY, expected 2027-02-28) - lead
2027-01-05 09:00      O2 (li, C1, 5000 USD) - lead
2027-01-06 03:00      A1 li calls C1 (Jan 6 local)
2027-01-06 09:00      O1 → visit
2027-01-08 09:00      O2 → visit
2027-01-10 09:00      O1 → proposal
2027-01-20 09:00      O2 → lost (price)
2027-01-31 17:00      C3 "Xi'an Noodles" (zhao, West): Feb 1, 01:00 local
2027-01-31 21:00      O1 → contract (won; Feb 1 local): contract CT1 signed 2027-02-01
2027-02-02 09:00      A2 li visits C1
2027-02-03 09:00      O3 (wang, C2, 8000 CNY, expected 2027-04-15) - lead
2027-02-05 09:00      O3 → visit
2027-02-10 09:00      O1 → satisfaction; O4 (zhao, C3, 20000 CNY, expected 2027-03-31) - lead
2027-02-11 09:00      O5 (zhao, C3, 3000 USD, expected 2027-02-20) - lead, never touched
2027-02-12 09:00      O4 → visit
2027-02-14            P1: 4000 CNY paid on CT1, confirmed by fin
2027-02-15 09:00      O3 → proposal
2027-02-16 09:00      A4 wang calls C2 about O3
2027-02-20 09:00      O4 → proposal; O6 (li, C1, 4000 CNY, probability 0.3, expected
                      2027-03-25) - lead
2027-02-25 09:00      O4 → contract (won): CT2 signed 2027-02-25
2027-03-02 09:00      A5 zhao meets C3
2027-03-03 09:00      C5 "Chengdu Spirits" (li, East)
2027-03-04 09:00      O7 (li, C5, 1500 CNY, expected 2027-05-10) - lead
2027-03-05 09:00      A3 li calls C1, next follow-up 2027-03-12 09:00; CT3 (wang, C2,
                      2000 USD) signed 2027-03-05
2027-03-10            P2: 1000 CNY paid on CT1, confirmed
2027-03-12            P3: 500 USD paid on CT3, NOT confirmed
now: 2027-03-20 10:00 (18:00 local, today 2027-03-20)
====================  ======================================================================

Contracts and instalments (outstanding = amount - confirmed payments allocated earliest due
first; age = days since the due date on 2027-03-20):

- CT1 (li, C1, 10000 CNY): 4000 due 02-15 (paid by P1), 3000 due 03-15 (1000 paid by P2:
  2000 outstanding, 5 days overdue), 3000 due 04-15 (not due).
- CT2 (zhao, C3, 20000 CNY): 20000 due 04-30 (not due).
- CT3 (wang, C2, 2000 USD): 2000 due 03-20 (due today: 0 days overdue; P3 unconfirmed).
- CT0 (zhao, C3, 9000 CNY, signed 2026-10-01): 3000 due 2026-12-01 (109 days overdue),
  3000 due 2027-01-10 (69 days), 3000 due 2027-02-10 (38 days).

Tasks: li - due 03-19 (open), due 03-20 15:00 UTC (23:00 local, today), due 03-20 17:00
UTC (01:00 local on the 21st: not due today), due 03-10 (done); wang - due 03-01 (open).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from guanxi.engine import SYSTEM, Money

from .graphql_client import code, graphql_client
from .test_graphql_queries import QueryCounter

TZ = "Asia/Shanghai"
NOW = datetime(2027, 3, 20, 10, 0)

#: A workflow on Opportunity.stage sharing no state name with the shipped pipeline.
RENAMED_PIPELINE = """\
workflow: sales_pipeline
label: Deals
entity: Opportunity
field: stage
initial: prospect
states:
  prospect: {label: Prospect, probability: 0.2}
  pitch: {label: Pitch, probability: 0.6}
  closed_won: {label: Closed won, final: true, outcome: won, probability: 1.0}
  closed_lost: {label: Closed lost, final: true, outcome: lost, probability: 0}
transitions:
  - {trigger: pitch, source: prospect, dest: pitch}
  - {trigger: win, source: pitch, dest: closed_won}
  - {trigger: drop, source: [prospect, pitch], dest: closed_lost}
"""


def cny(amount: str) -> dict[str, str]:
    return {"amount": f"{Decimal(amount):.2f}", "currency": "CNY"}


def usd(amount: str) -> dict[str, str]:
    return {"amount": f"{Decimal(amount):.2f}", "currency": "USD"}


def money(amount: str, currency: str = "CNY") -> Money:
    return Money(Decimal(amount), currency)


class Story:
    """The data set of the module docstring, written through the record API."""

    def __init__(self, engine: Any, clock: Any) -> None:
        self.engine, self.clock = engine, clock
        records = engine.records
        records.create("Team", {"name": "East"})
        records.create("Team", {"name": "West"})
        people = {
            "li": ("customer_manager", "East"),
            "wang": ("customer_manager", "East"),
            "zhao": ("customer_manager", "West"),
            "chen": ("sales_supervisor", "East"),
            "qian": ("sales_supervisor", "West"),
            "boss": ("executive", None),
            "fin": ("finance", None),
        }
        self.ids = {
            name: engine.auth.create_user(name, roles=[role], team=team).id
            for name, (role, team) in people.items()
        }
        self.actors = {name: engine.auth.actor_for(uid) for name, uid in self.ids.items()}
        li, wang, zhao = (self.actors[n] for n in ("li", "wang", "zhao"))

        self.at(2027, 1, 2, 9)
        self.c4 = self.customer("Pool Tea", "West", SYSTEM)
        self.at(2027, 1, 3, 9)
        self.c1 = self.customer("Sichuan Liquor", "East", li)
        self.c2 = self.customer("Shanghai Foods", "East", wang)
        self.k1 = self.contact(self.c1, li)
        self.k2 = self.contact(self.c2, wang)
        self.at(2027, 1, 4, 9)
        o1 = self.deal(li, self.c1, "10000", "CNY", date(2027, 2, 28), self.k1)
        self.at(2027, 1, 5, 9)
        o2 = self.deal(li, self.c1, "5000", "USD", None, self.k1)
        self.at(2027, 1, 6, 3)
        self.activity(li, self.c1, "call", opportunity=o1)
        self.at(2027, 1, 6, 9)
        self.fire(o1, "schedule_visit", li)
        self.at(2027, 1, 8, 9)
        self.fire(o2, "schedule_visit", li)
        self.at(2027, 1, 10, 9)
        self.fire(o1, "propose", li)
        self.at(2027, 1, 20, 9)
        self.fire(o2, "lose", li, reason="price")
        self.at(2027, 1, 31, 17)
        self.c3 = self.customer("Xi'an Noodles", "West", zhao)
        self.k3 = self.contact(self.c3, zhao)
        self.at(2027, 1, 31, 21)
        self.fire(o1, "sign", li)
        self.at(2027, 2, 2, 9)
        self.activity(li, self.c1, "visit")
        self.at(2027, 2, 3, 9)
        o3 = self.deal(wang, self.c2, "8000", "CNY", date(2027, 4, 15), self.k2)
        self.at(2027, 2, 5, 9)
        self.fire(o3, "schedule_visit", wang)
        self.at(2027, 2, 10, 9)
        self.fire(o1, "deliver", li)
        o4 = self.deal(zhao, self.c3, "20000", "CNY", date(2027, 3, 31), self.k3)
        self.at(2027, 2, 11, 9)
        self.deal(zhao, self.c3, "3000", "USD", date(2027, 2, 20), None)
        self.at(2027, 2, 12, 9)
        self.fire(o4, "schedule_visit", zhao)
        self.at(2027, 2, 14, 9)
        self.ct1 = self.contract_of(o1)
        self.instalments(
            self.ct1,
            li,
            ("2027-02-15", "4000"),
            ("2027-03-15", "3000"),
            ("2027-04-15", "3000"),
        )
        self.payment(self.c1, self.ct1, "4000", "CNY", date(2027, 2, 14), confirmed=True)
        self.at(2027, 2, 15, 9)
        self.fire(o3, "propose", wang)
        self.at(2027, 2, 16, 9)
        self.activity(wang, self.c2, "call", opportunity=o3)
        self.at(2027, 2, 20, 9)
        self.fire(o4, "propose", zhao)
        self.deal(li, self.c1, "4000", "CNY", date(2027, 3, 25), self.k1, probability="0.3")
        self.at(2027, 2, 25, 9)
        self.fire(o4, "sign", zhao)
        ct2 = self.contract_of(o4)
        self.instalments(ct2, zhao, ("2027-04-30", "20000"))
        ct0 = self.engine.records.create(
            "Contract",
            {
                "number": "CT0",
                "customer": self.c3.id,
                "amount": money("9000"),
                "signed_on": date(2026, 10, 1),
                "status": "active",
            },
            actor=zhao,
        )
        self.instalments(
            ct0, zhao, ("2026-12-01", "3000"), ("2027-01-10", "3000"), ("2027-02-10", "3000")
        )
        self.at(2027, 3, 2, 9)
        self.activity(zhao, self.c3, "meeting")
        self.at(2027, 3, 3, 9)
        c5 = self.customer("Chengdu Spirits", "East", li)
        self.at(2027, 3, 4, 9)
        self.deal(li, c5, "1500", "CNY", date(2027, 5, 10), None)
        self.at(2027, 3, 5, 9)
        self.activity(li, self.c1, "call", next_follow_up_at=datetime(2027, 3, 12, 9))
        ct3 = self.engine.records.create(
            "Contract",
            {
                "number": "CT3",
                "customer": self.c2.id,
                "amount": money("2000", "USD"),
                "signed_on": date(2027, 3, 5),
                "status": "active",
            },
            actor=wang,
        )
        self.instalments(ct3, wang, ("2027-03-20", "2000"))
        self.at(2027, 3, 10, 9)
        self.payment(self.c1, self.ct1, "1000", "CNY", date(2027, 3, 10), confirmed=True)
        self.at(2027, 3, 12, 9)
        self.payment(self.c2, ct3, "500", "USD", date(2027, 3, 12), confirmed=False)
        self.task(li, "call back", datetime(2027, 3, 19, 9))
        self.task(li, "send the offer", datetime(2027, 3, 20, 15))
        self.task(li, "book the fair", datetime(2027, 3, 20, 17))
        self.task(li, "old chore", datetime(2027, 3, 10, 9), done=True)
        self.task(wang, "visit", datetime(2027, 3, 1, 9))
        clock.now = NOW

    # -- writing the story ---------------------------------------------------------------
    def at(self, *moment: int) -> None:
        self.clock.now = datetime(*moment)

    def customer(self, name: str, region: str, actor: Any) -> Any:
        return self.engine.records.create("Customer", {"name": name, "region": region}, actor=actor)

    def contact(self, customer: Any, actor: Any) -> Any:
        return self.engine.records.create(
            "Contact", {"customer": customer.id, "name": f"contact of {customer.name}"}, actor=actor
        )

    def deal(self, actor, customer, amount, currency, expected, contact, **values) -> Any:
        data = {
            "title": f"deal {amount} {currency}",
            "customer": customer.id,
            "amount": money(amount, currency),
            "expected_close_date": expected,
            "contact": contact.id if contact else None,
            **values,
        }
        return self.engine.records.create("Opportunity", data, actor=actor)

    def fire(self, deal: Any, trigger: str, actor: Any, **payload: Any) -> None:
        self.engine.runtime.fire_transition("Opportunity", deal.id, trigger, actor, payload=payload)

    def activity(self, actor, customer, kind, **values) -> None:
        data = {
            "customer": customer.id,
            "kind": kind,
            "subject": f"{kind} {customer.name}",
            "at": self.clock.now,
            **{k: (v.id if hasattr(v, "id") else v) for k, v in values.items()},
        }
        self.engine.records.create("Activity", data, actor=actor)

    def contract_of(self, deal: Any) -> Any:
        flt = {"opportunity": {"id": {"eq": deal.id}}}
        (contract,) = self.engine.records.list("Contract", filter=flt).records
        return contract

    def instalments(self, contract: Any, actor: Any, *plan: tuple[str, str]) -> None:
        currency = contract.amount.currency
        rows = [
            {"due_date": date.fromisoformat(due), "amount": money(amount, currency)}
            for due, amount in plan
        ]
        self.engine.records.update("Contract", contract.id, {"instalments": rows}, actor=actor)

    def payment(self, customer, contract, amount, currency, paid_on, *, confirmed) -> None:
        data = {
            "customer": customer.id,
            "contract": contract.id,
            "amount": money(amount, currency),
            "paid_on": paid_on,
            "method": "bank_transfer",
            "confirmed": confirmed,
        }
        self.engine.records.create("Payment", data, actor=self.actors["fin"])

    def task(self, actor, title, due, done=False) -> None:
        self.engine.records.create("Task", {"title": title, "due": due, "done": done}, actor=actor)

    # -- asking -------------------------------------------------------------------------
    def token(self, name: str) -> str:
        return self.engine.auth.issue_token(self.ids[name]).token


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(use_entry_points=True, plugins=("sales",), clock=clock, timezone=TZ)


@pytest.fixture
def story(engine, clock) -> Story:
    return Story(engine, clock)


@pytest.fixture
def api(engine, story):
    with graphql_client(engine) as api:
        yield api


def ask(api, story: Story, who: str, fields: str) -> Any:
    """``analytics { sales { <fields> } }`` asked by ``who``; the ``sales`` object."""
    result = api.gql("{ analytics { sales { " + fields + " } } }", token=story.token(who))
    assert "errors" not in result, result
    return result["data"]["analytics"]["sales"]


STAGES = "funnel{0} {{ stages {{ stage deals amount {{ amount currency }} }} }}"
FULL_FUNNEL = """funnel{0} {{
  stages {{ stage label outcome deals amount {{ amount currency }} nextStage conversion
            averageDays stays }}
  open won lost wonAmount {{ amount currency }} lostAmount {{ amount currency }}
}}"""


def stage_rows(funnel: dict) -> dict[str, tuple[int, list]]:
    return {s["stage"]: (s["deals"], s["amount"]) for s in funnel["stages"]}


# -- funnel -----------------------------------------------------------------------------------
def test_funnel_counts_the_deals_whose_history_entered_each_stage_with_amounts_per_currency(
    api, story
):
    funnel = ask(api, story, "boss", STAGES.format(""))["funnel"]
    assert [s["stage"] for s in funnel["stages"]] == [
        "lead",
        "visit",
        "proposal",
        "contract",
        "satisfaction",
        "lost",
    ]
    assert stage_rows(funnel) == {
        "lead": (7, [cny("43500"), usd("8000")]),  # O1 O3 O4 O6 O7 / O2 O5
        "visit": (4, [cny("38000"), usd("5000")]),  # O1 O3 O4 / O2
        "proposal": (3, [cny("38000")]),  # O1 O3 O4
        "contract": (2, [cny("30000")]),  # O1 O4
        "satisfaction": (1, [cny("10000")]),  # O1
        "lost": (1, [usd("5000")]),  # O2
    }


def test_funnel_conversion_is_the_share_of_a_stages_deals_that_entered_the_next(api, story):
    funnel = ask(api, story, "boss", FULL_FUNNEL.format(""))["funnel"]
    found = {s["stage"]: (s["nextStage"], s["conversion"]) for s in funnel["stages"]}
    assert found == {
        "lead": ("visit", pytest.approx(4 / 7, abs=1e-4)),
        "visit": ("proposal", 0.75),
        "proposal": ("contract", pytest.approx(2 / 3, abs=1e-4)),
        "contract": ("satisfaction", 0.5),
        "satisfaction": (None, None),
        "lost": (None, None),
    }


def test_funnel_average_days_are_taken_over_the_stays_that_ended(api, story):
    funnel = ask(api, story, "boss", FULL_FUNNEL.format(""))["funnel"]
    found = {s["stage"]: (s["averageDays"], s["stays"]) for s in funnel["stages"]}
    assert found == {
        "lead": (2.25, 4),  # O1 2, O2 3, O3 2, O4 2 days; O5 O6 O7 still there
        "visit": (8.5, 4),  # O1 4, O2 12 (then lost), O3 10, O4 8
        "proposal": (13.25, 2),  # O1 21.5 (01-10 09:00 to 01-31 21:00), O4 5; O3 still there
        "contract": (9.5, 1),  # O1 01-31 21:00 to 02-10 09:00; O4 still there
        "satisfaction": (None, 0),
        "lost": (None, 0),
    }


def test_funnel_counts_won_and_lost_by_the_outcome_of_the_current_stage(api, story):
    funnel = ask(api, story, "boss", FULL_FUNNEL.format(""))["funnel"]
    outcomes = {s["stage"]: s["outcome"] for s in funnel["stages"]}
    assert outcomes == {
        "lead": None,
        "visit": None,
        "proposal": None,
        "contract": "won",
        "satisfaction": "won",
        "lost": "lost",
    }
    assert (funnel["open"], funnel["won"], funnel["lost"]) == (4, 2, 1)
    assert funnel["wonAmount"] == [cny("30000")]  # O1 (satisfaction) + O4 (contract)
    assert funnel["lostAmount"] == [usd("5000")]


def test_a_reopened_deal_stands_open_while_its_history_keeps_the_lost_stage(api, story):
    o2 = story.engine.records.list("Opportunity", filter={"title": {"eq": "deal 5000 USD"}})
    story.fire(o2.records[0], "reopen", story.actors["chen"])  # lost on 01-20, 59 days ago
    funnel = ask(api, story, "boss", FULL_FUNNEL.format(""))["funnel"]
    found = {s["stage"]: (s["deals"], s["stays"], s["averageDays"]) for s in funnel["stages"]}
    assert found["lost"] == (1, 1, 59.04)  # 01-20 09:00 to 03-20 10:00, 59 days and an hour
    assert found["lead"] == (7, 4, 2.25)  # O2 entered lead again: one deal, a stay going on
    assert (funnel["open"], funnel["won"], funnel["lost"]) == (5, 2, 0)
    assert funnel["lostAmount"] == []


def test_funnel_labels_stages_in_the_callers_language(api, story):
    query = "{ analytics { sales { funnel { stages { stage label } } } } }"
    result = api.gql(query, token=story.token("boss"), headers={"Accept-Language": "zh"})
    labels = {
        s["stage"]: s["label"] for s in result["data"]["analytics"]["sales"]["funnel"]["stages"]
    }
    assert labels["lead"] == "寻找准客户" and labels["lost"] == "丢单"


def test_funnel_from_and_to_select_opportunities_by_their_local_creation_day(api, story):
    args = '(from: "2027-02-01", to: "2027-02-28")'
    funnel = ask(api, story, "boss", STAGES.format(args))["funnel"]
    assert stage_rows(funnel) == {  # O3, O4, O5 and O6 were created in February
        "lead": (4, [cny("32000"), usd("3000")]),
        "visit": (2, [cny("28000")]),
        "proposal": (2, [cny("28000")]),
        "contract": (1, [cny("20000")]),
        "satisfaction": (0, []),
        "lost": (0, []),
    }


def test_funnel_filters_by_owner_and_by_customer_region(api, story):
    by_li = ask(api, story, "boss", STAGES.format(f'(ownerId: "{story.ids["li"]}")'))
    assert stage_rows(by_li["funnel"]) == {  # O1 O2 O6 O7
        "lead": (4, [cny("15500"), usd("5000")]),
        "visit": (2, [cny("10000"), usd("5000")]),
        "proposal": (1, [cny("10000")]),
        "contract": (1, [cny("10000")]),
        "satisfaction": (1, [cny("10000")]),
        "lost": (1, [usd("5000")]),
    }
    west = ask(api, story, "boss", STAGES.format('(region: "West")'))
    assert stage_rows(west["funnel"]) == {  # O4 O5 (C3)
        "lead": (2, [cny("20000"), usd("3000")]),
        "visit": (1, [cny("20000")]),
        "proposal": (1, [cny("20000")]),
        "contract": (1, [cny("20000")]),
        "satisfaction": (0, []),
        "lost": (0, []),
    }


def test_funnel_follows_an_admin_workflow_whatever_its_states_are_called(make_engine, home, clock):
    (home / "workflows" / "deals.yaml").write_text(RENAMED_PIPELINE, encoding="utf-8")
    engine = make_engine(use_entry_points=True, plugins=("sales",), clock=clock, timezone=TZ)
    records = engine.records
    customer = records.create("Customer", {"name": "Ningbo Seafood"})
    deals = [
        records.create("Opportunity", {"title": f"d{i}", "customer": customer.id, "amount": a})
        for i, a in enumerate(("100", "200", "400"))
    ]
    fire = engine.runtime.fire_transition
    clock.advance(days=1)
    for deal in deals:
        fire("Opportunity", deal.id, "pitch", SYSTEM)
    clock.advance(days=2)
    fire("Opportunity", deals[0].id, "win", SYSTEM)
    fire("Opportunity", deals[1].id, "drop", SYSTEM)
    with graphql_client(engine) as api:
        result = api.gql(
            "{ analytics { sales { funnel { stages { stage deals outcome nextStage averageDays }"
            " open won lost wonAmount { amount } lostAmount { amount } } } } }"
        )
    funnel = result["data"]["analytics"]["sales"]["funnel"]
    assert funnel["stages"] == [
        {
            "stage": "prospect",
            "deals": 3,
            "outcome": None,
            "nextStage": "pitch",
            "averageDays": 1.0,
        },
        {
            "stage": "pitch",
            "deals": 3,
            "outcome": None,
            "nextStage": "closed_won",
            "averageDays": 2.0,
        },
        {
            "stage": "closed_won",
            "deals": 1,
            "outcome": "won",
            "nextStage": None,
            "averageDays": None,
        },
        {
            "stage": "closed_lost",
            "deals": 1,
            "outcome": "lost",
            "nextStage": None,
            "averageDays": None,
        },
    ]
    assert (funnel["open"], funnel["won"], funnel["lost"]) == (1, 1, 1)
    assert funnel["wonAmount"] == [{"amount": "100.00"}]
    assert funnel["lostAmount"] == [{"amount": "200.00"}]


# -- forecast ---------------------------------------------------------------------------------
FORECAST = (
    "forecast{0} {{ month overdue deals amount {{ amount currency }}"
    " weighted {{ amount currency }} }}"
)


def test_forecast_weights_open_amounts_by_probability_per_expected_close_month(api, story):
    rows = ask(api, story, "boss", FORECAST.format("(months: 3)"))["forecast"]
    assert rows == [
        # O5: lead (0.1), expected 2027-02-20, before today
        {
            "month": None,
            "overdue": True,
            "deals": 1,
            "amount": [usd("3000")],
            "weighted": [usd("300")],
        },
        # O6: lead with probability 0.3 set by hand
        {
            "month": "2027-03",
            "overdue": False,
            "deals": 1,
            "amount": [cny("4000")],
            "weighted": [cny("1200")],
        },
        # O3: proposal (0.5)
        {
            "month": "2027-04",
            "overdue": False,
            "deals": 1,
            "amount": [cny("8000")],
            "weighted": [cny("4000")],
        },
        # O7: lead (0.1)
        {
            "month": "2027-05",
            "overdue": False,
            "deals": 1,
            "amount": [cny("1500")],
            "weighted": [cny("150")],
        },
    ]  # O1 and O4 are won, O2 lost: none of them is open


def test_forecast_months_limit_how_far_ahead_it_looks(api, story):
    rows = ask(api, story, "boss", FORECAST.format("(months: 1)"))["forecast"]
    assert [(r["month"], r["deals"]) for r in rows] == [(None, 1), ("2027-03", 1)]
    default = ask(api, story, "boss", FORECAST.format(""))["forecast"]
    assert [r["month"] for r in default] == [
        None,
        "2027-03",
        "2027-04",
        "2027-05",
        "2027-06",
        "2027-07",
        "2027-08",
    ]


# -- performance ------------------------------------------------------------------------------
PERFORMANCE = """performance{0} {{
  period start end ownerId owner region wonDeals wonAmount {{ amount currency }}
  activities newCustomers
}}"""


def perf(period, start, end, owner_id, owner, region, won, amount, activities, customers):
    return {
        "period": period,
        "start": start,
        "end": end,
        "ownerId": owner_id,
        "owner": owner,
        "region": region,
        "wonDeals": won,
        "wonAmount": amount,
        "activities": activities,
        "newCustomers": customers,
    }


def test_performance_by_owner_and_month_uses_local_month_boundaries(api, story):
    rows = ask(api, story, "boss", PERFORMANCE.format(""))["performance"]
    li, wang, zhao = (str(story.ids[n]) for n in ("li", "wang", "zhao"))
    jan, feb, mar = (
        ("2027-01-01", "2027-01-31"),
        ("2027-02-01", "2027-02-28"),
        ("2027-03-01", "2027-03-31"),
    )
    assert rows == [
        perf("2027-01", *jan, li, "li", None, 0, [], 1, 1),  # A1; C1
        perf("2027-01", *jan, wang, "wang", None, 0, [], 0, 1),  # C2
        perf("2027-01", *jan, None, None, None, 0, [], 0, 1),  # C4, in the pool
        # O1 signed 01-31 21:00 UTC = Feb 1 local; A2
        perf("2027-02", *feb, li, "li", None, 1, [cny("10000")], 1, 0),
        perf("2027-02", *feb, wang, "wang", None, 0, [], 1, 0),  # A4
        # O4 signed; C3 created 01-31 17:00 UTC = Feb 1 local
        perf("2027-02", *feb, zhao, "zhao", None, 1, [cny("20000")], 0, 1),
        perf("2027-03", *mar, li, "li", None, 0, [], 1, 1),  # A3; C5
        perf("2027-03", *mar, zhao, "zhao", None, 0, [], 1, 0),  # A5
    ]


def test_performance_by_region_and_quarter(api, story):
    args = "(period: QUARTER, groupBy: REGION)"
    rows = ask(api, story, "boss", PERFORMANCE.format(args))["performance"]
    q1 = ("2027-Q1", "2027-01-01", "2027-03-31")
    assert rows == [
        # O1 won; A1 A2 A3 (C1), A4 (C2); C1 C2 C5
        perf(*q1, None, None, "East", 1, [cny("10000")], 4, 3),
        # O4 won; A5 (C3); C3 C4
        perf(*q1, None, None, "West", 1, [cny("20000")], 1, 2),
    ]


def test_performance_counts_a_deal_won_once_in_the_period_it_first_entered_a_won_stage(api, story):
    args = '(period: YEAR, from: "2026-06-01", to: "2027-12-31")'
    rows = ask(api, story, "boss", PERFORMANCE.format(args))["performance"]
    by_group = {(r["period"], r["owner"]): (r["wonDeals"], r["wonAmount"]) for r in rows}
    # O1 reached contract, then satisfaction: won once; nothing happened in 2026
    assert by_group == {
        ("2027", "li"): (1, [cny("10000")]),
        ("2027", "wang"): (0, []),
        ("2027", "zhao"): (1, [cny("20000")]),
        ("2027", None): (0, []),
    }
    assert {r["start"] for r in rows} == {"2027-01-01"}


# -- receivables ------------------------------------------------------------------------------
AGED = "currency notDue overdue0To30 overdue31To60 overdue61To90 overdueOver90 total"
RECEIVABLES = (
    f"receivables {{ customers {{ customerId customerName {AGED} }} totals {{ {AGED} }} }}"
)


def aged(currency, not_due, d30, d60, d90, over90, total, **customer):
    return {
        **customer,
        "currency": currency,
        "notDue": not_due,
        "overdue0To30": d30,
        "overdue31To60": d60,
        "overdue61To90": d90,
        "overdueOver90": over90,
        "total": total,
    }


def test_receivables_age_each_customers_outstanding_instalments_by_due_date(api, story):
    found = ask(api, story, "boss", RECEIVABLES)["receivables"]
    c1, c2, c3 = (str(c.id) for c in (story.c1, story.c2, story.c3))
    assert found["customers"] == [  # the largest total first
        # CT2 20000 not due; CT0 3000 each at 38, 69 and 109 days
        aged("CNY", "20000.00", "0.00", "3000.00", "3000.00", "3000.00", "29000.00",
             customerId=c3, customerName="Xi'an Noodles"),
        # CT1: 3000 not due, 2000 left of the instalment due 5 days ago
        aged("CNY", "3000.00", "2000.00", "0.00", "0.00", "0.00", "5000.00",
             customerId=c1, customerName="Sichuan Liquor"),
        # CT3: due today, the payment of 500 is not confirmed
        aged("USD", "0.00", "2000.00", "0.00", "0.00", "0.00", "2000.00",
             customerId=c2, customerName="Shanghai Foods"),
    ]  # fmt: skip


def test_receivables_totals_have_a_row_per_currency(api, story):
    found = ask(api, story, "boss", RECEIVABLES)["receivables"]
    assert found["totals"] == [
        aged("CNY", "23000.00", "2000.00", "3000.00", "3000.00", "3000.00", "34000.00"),
        aged("USD", "0.00", "2000.00", "0.00", "0.00", "0.00", "2000.00"),
    ]


# -- dashboard --------------------------------------------------------------------------------
DASHBOARD = """dashboard{0} {{
  from to newCustomers newOpportunities activities contractsSigned
  contractAmount {{ amount currency }} payments paymentsReceived {{ amount currency }}
  todos {{ overdueFollowUps rottenDeals tasksDue pendingInstalments
           pendingAmount {{ amount currency }} }}
}}"""


def test_dashboard_counts_this_month_to_today_by_default(api, story):
    board = ask(api, story, "boss", DASHBOARD.format(""))["dashboard"]
    board.pop("todos")
    assert board == {
        "from": "2027-03-01",
        "to": "2027-03-20",
        "newCustomers": 1,  # C5
        "newOpportunities": 1,  # O7
        "activities": 2,  # A3, A5
        "contractsSigned": 1,  # CT3
        "contractAmount": [usd("2000")],
        "payments": 1,  # P2; P3 is not confirmed
        "paymentsReceived": [cny("1000")],
    }


def test_dashboard_counts_the_window_it_is_given(api, story):
    board = ask(api, story, "boss", DASHBOARD.format('(from: "2027-01-01", to: "2027-02-28")'))
    board = board["dashboard"]
    board.pop("todos")
    assert board == {
        "from": "2027-01-01",
        "to": "2027-02-28",
        "newCustomers": 4,  # C1 C2 C3 C4
        "newOpportunities": 6,  # O1-O6
        "activities": 3,  # A1 A2 A4
        "contractsSigned": 2,  # CT1 (02-01), CT2 (02-25); CT0 was signed in 2026
        "contractAmount": [cny("30000")],
        "payments": 1,  # P1
        "paymentsReceived": [cny("4000")],
    }


def todo(follow_ups: int, rotten: int, tasks: int, pending: int, amount: list) -> dict:
    return {
        "overdueFollowUps": follow_ups,
        "rottenDeals": rotten,
        "tasksDue": tasks,
        "pendingInstalments": pending,
        "pendingAmount": amount,
    }


def test_dashboard_todos_are_the_callers_own(api, story):
    people = ("li", "wang", "zhao", "boss")
    todos = {
        who: ask(api, story, who, DASHBOARD.format(""))["dashboard"]["todos"] for who in people
    }
    assert todos == {
        # C1's follow-up 03-12 passed; O6 and O7 are leads younger than 30 days; two tasks
        # due by the end of today (local); CT1's instalment due 03-15
        "li": todo(1, 0, 2, 1, [cny("2000")]),
        # O3 in proposal without activity since 02-16 (21 days make it rotten); CT3 due today
        "wang": todo(0, 1, 1, 1, [usd("2000")]),
        # O5, a lead untouched since 02-11 (30 days); CT0's three instalments
        "zhao": todo(0, 1, 0, 3, [cny("9000")]),
        "boss": todo(0, 0, 0, 0, []),
    }


def test_dashboard_todos_of_finance_hold_every_pending_instalment(api, story):
    todos = ask(api, story, "fin", DASHBOARD.format(""))["dashboard"]["todos"]
    assert (todos["pendingInstalments"], todos["pendingAmount"]) == (
        5,  # CT1's due 03-15, CT0's three, CT3's due today
        [cny("11000"), usd("2000")],
    )


# -- permissions ------------------------------------------------------------------------------
def test_a_customer_manager_sees_only_own_figures(api, story):
    figures = ask(
        api,
        story,
        "li",
        STAGES.format("")
        + " forecast(months: 3) { deals }"
        + " performance(period: YEAR) { owner wonDeals activities newCustomers }"
        + " receivables { customers { customerName total } }"
        + ' dashboard(from: "2027-01-01") { newCustomers newOpportunities activities'
        + " contractsSigned payments }",
    )
    assert stage_rows(figures["funnel"])["lead"] == (4, [cny("15500"), usd("5000")])
    assert [r["deals"] for r in figures["forecast"]] == [0, 1, 0, 1]  # O6 in March, O7 in May
    assert figures["performance"] == [
        {"owner": "li", "wonDeals": 1, "activities": 3, "newCustomers": 2}
    ]
    assert figures["receivables"]["customers"] == [
        {"customerName": "Sichuan Liquor", "total": "5000.00"}
    ]
    assert figures["dashboard"] == {
        "newCustomers": 2,  # C1 C5
        "newOpportunities": 4,  # O1 O2 O6 O7
        "activities": 3,  # A1 A2 A3
        "contractsSigned": 1,  # CT1
        "payments": 2,  # P1 P2 (C1's)
    }


def test_a_supervisor_sees_the_figures_of_the_team(api, story):
    figures = ask(
        api,
        story,
        "chen",
        STAGES.format("")
        + " performance(period: YEAR) { owner wonDeals activities newCustomers }"
        + " receivables { customers { customerName total } }",
    )
    assert stage_rows(figures["funnel"])["lead"] == (5, [cny("23500"), usd("5000")])  # + O3
    assert figures["performance"] == [
        {"owner": "li", "wonDeals": 1, "activities": 3, "newCustomers": 2},
        {"owner": "wang", "wonDeals": 0, "activities": 1, "newCustomers": 1},
    ]
    assert figures["receivables"]["customers"] == [
        {"customerName": "Sichuan Liquor", "total": "5000.00"},
        {"customerName": "Shanghai Foods", "total": "2000.00"},
    ]
    west = ask(api, story, "qian", STAGES.format(""))
    assert stage_rows(west["funnel"])["lead"] == (2, [cny("20000"), usd("3000")])  # O4 O5


ANALYST_ROLE = """\
roles:
  analyst:
    default: {read: all}
    hidden_fields:
      Opportunity: [amount]
      Contract: [amount]
      PaymentPlan: [amount]
      Payment: [amount]
"""


def test_amounts_a_role_may_not_see_are_left_out_of_its_figures(make_engine, home, clock):
    (home / "roles.yaml").write_text(ANALYST_ROLE, encoding="utf-8")
    engine = make_engine(use_entry_points=True, plugins=("sales",), clock=clock, timezone=TZ)
    story = Story(engine, clock)
    story.ids["ann"] = engine.auth.create_user("ann", roles=["analyst"]).id
    with graphql_client(engine) as api:
        figures = ask(
            api,
            story,
            "ann",
            STAGES.format("")
            + " forecast(months: 1) { deals amount { amount } weighted { amount } }"
            + " receivables { customers { total } totals { total } }"
            + " dashboard { contractsSigned contractAmount { amount } payments"
            + " paymentsReceived { amount } }",
        )
    assert stage_rows(figures["funnel"])["lead"] == (7, [])
    assert figures["forecast"] == [
        {"deals": 1, "amount": [], "weighted": []},
        {"deals": 1, "amount": [], "weighted": []},
    ]
    assert figures["receivables"] == {"customers": [], "totals": []}
    assert figures["dashboard"] == {
        "contractsSigned": 1,
        "contractAmount": [],
        "payments": 1,
        "paymentsReceived": [],
    }


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("figure", "field"),
    [
        ('funnel(from: "2027-03-02", to: "2027-03-01") { won }', "from"),
        ('funnel(ownerId: "li") { won }', "ownerId"),
        ('funnel(to: "9999-12-31") { won }', "to"),
        ("forecast(months: 0) { deals }", "months"),
        ("forecast(months: 37) { deals }", "months"),
        ('performance(from: "2027-03-02", to: "2027-03-01") { period }', "from"),
        ('performance(from: "2010-01-01", to: "2027-03-01") { period }', "from"),
        ('dashboard(from: "2027-03-21", to: "2027-03-20") { activities }', "from"),
    ],
)
def test_bad_arguments_are_a_validation_error_naming_the_argument(engine, figure, field):
    boss = engine.auth.create_user("boss", roles=["executive"]).id
    with graphql_client(engine) as api:
        query = "{ analytics { sales { " + figure + " } } }"
        result = api.gql(query, token=engine.auth.issue_token(boss).token)
    assert code(result) == "VALIDATION", result
    assert result["errors"][0]["extensions"]["field"] == field


# -- cost -------------------------------------------------------------------------------------
EVERYTHING = (
    FULL_FUNNEL.format("")
    + FORECAST.format("")
    + PERFORMANCE.format("")
    + RECEIVABLES
    + DASHBOARD.format("")
)


def test_the_figures_cost_a_number_of_queries_that_does_not_grow_with_the_data(make_engine, clock):
    engine = make_engine(
        use_entry_points=True, plugins=("sales",), clock=clock, timezone=TZ, open=False
    )
    counter = QueryCounter()
    counter.install(engine)
    engine.open(migrate=True)
    story = Story(engine, clock)
    with graphql_client(engine) as api:

        def queries(who: str) -> int:
            token = story.token(who)
            counter.count = 0
            result = api.gql("{ analytics { sales { " + EVERYTHING + " } } }", token=token)
            assert "errors" not in result, result
            return counter.count

        before = {who: queries(who) for who in ("li", "boss")}
        grow(story, 12)
        after = {who: queries(who) for who in ("li", "boss")}
    assert after == before
    assert before["boss"] <= 40, before  # a few GROUP BY queries per figure


def grow(story: Story, n: int) -> None:
    """``n`` more of everything for li: customers, deals moved along, activities, tasks,
    contracts with instalments and payments."""
    li = story.actors["li"]
    for i in range(n):
        story.at(2027, 2, 1 + i, 9)
        customer = story.customer(f"Grown {i}", "East", li)
        contact = story.contact(customer, li)
        deal = story.deal(li, customer, "100", "CNY", date(2027, 4, 1), contact)
        story.activity(li, customer, "call", opportunity=deal)
        story.task(li, f"task {i}", datetime(2027, 3, 1, 9))
        for trigger in ("schedule_visit", "propose", "sign")[: i % 4]:
            story.fire(deal, trigger, li)
        if i % 4 == 3:
            contract = story.contract_of(deal)
            story.instalments(contract, li, ("2027-02-20", "60"), ("2027-04-20", "40"))
            story.payment(customer, contract, "30", "CNY", date(2027, 2, 21), confirmed=True)
    story.clock.now = NOW
