"""The shipped ``sales_pipeline`` workflow on ``Opportunity.stage``, and its eight-step
replacement from ``docs/examples``.

Real users with roles and teams fire the transitions: customer managers li (team East)
and zhao (West), supervisors chen (East) and qian (West). Time is an injected clock.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from guanxi.engine import Money, NotFound, ValidationError, WorkflowError

from .conftest import T0

EIGHT_STEPS = Path(__file__).parent.parent / "docs" / "examples" / "sales_eight_steps.yaml"


@pytest.fixture
def build(make_engine, clock):
    def build():
        return make_engine(use_entry_points=True, plugins=("sales",), clock=clock)

    return build


class Pipeline:
    """Two teams, their people, and one customer of li's with a contact and a lead."""

    def __init__(self, engine) -> None:
        self.engine = engine
        engine.records.create("Team", {"name": "East"})
        engine.records.create("Team", {"name": "West"})
        people = {
            "li": ("customer_manager", "East"),
            "wang": ("customer_manager", "East"),
            "zhao": ("customer_manager", "West"),
            "chen": ("sales_supervisor", "East"),
            "qian": ("sales_supervisor", "West"),
        }
        self.ids = {
            name: engine.auth.create_user(name, roles=[role], team=team).id
            for name, (role, team) in people.items()
        }
        self.li, self.wang, self.zhao, self.chen, self.qian = (
            engine.auth.actor_for(self.ids[name]) for name in people
        )
        records = engine.records
        self.customer = records.create("Customer", {"name": "Sichuan Liquor"}, actor=self.li)
        self.contact = records.create(
            "Contact", {"customer": self.customer.id, "name": "Zhang Wei"}, actor=self.li
        )
        self.lead = self.new_opportunity()

    def new_opportunity(self, **values):
        data = {"title": "2027 subscriptions", "customer": self.customer.id, **values}
        return self.engine.records.create("Opportunity", data, actor=self.li)

    def fire(self, trigger, actor=None, record=None, **payload):
        return self.engine.runtime.fire_transition(
            "Opportunity", (record or self.lead).id, trigger, actor or self.li, payload=payload
        )

    def ready_to_propose(self, record=None):
        self.engine.records.update(
            "Opportunity",
            (record or self.lead).id,
            {"amount": "36000", "expected_close_date": "2027-04-30", "contact": self.contact.id},
            actor=self.li,
        )

    def get(self, record=None, actor=None):
        kwargs = {"actor": actor} if actor else {}
        return self.engine.records.get("Opportunity", (record or self.lead).id, **kwargs)

    def contracts(self, record=None):
        flt = {"opportunity": {"id": {"eq": (record or self.lead).id}}}
        return self.engine.records.list("Contract", filter=flt).records


@pytest.fixture
def engine(build):
    return build()


@pytest.fixture
def sales(engine):
    return Pipeline(engine)


def failures(info: pytest.ExceptionInfo) -> list[str]:
    return info.value.details["failures"]


def test_the_shipped_pipeline_binds_the_opportunity_stage(engine):
    wf = engine.workflows["sales_pipeline"]
    assert (wf.origin, wf.entity, wf.field, wf.initial) == (
        "shipped",
        "Opportunity",
        "stage",
        "lead",
    )
    assert {s: (st.labels["zh"], st.probability) for s, st in wf.states.items()} == {
        "lead": ("寻找准客户", 0.1),
        "visit": ("约见拜访", 0.25),
        "proposal": ("提出方案", 0.5),
        "contract": ("签约", 1.0),
        "satisfaction": ("客户满意", 1.0),
        "lost": ("丢单", 0),
    }
    assert wf.states["satisfaction"].final and wf.states["satisfaction"].outcome == "won"
    assert engine.registry["Opportunity"].fields["stage"].choice_values() == tuple(wf.states)


def test_a_new_opportunity_is_a_lead_with_the_lead_probability(sales):
    assert (sales.lead.stage, sales.lead.probability) == ("lead", Decimal("0.10"))
    assert sales.lead.owner == sales.ids["li"]


def test_a_probability_given_at_creation_is_kept(sales):
    assert sales.new_opportunity(probability="0.3").probability == Decimal("0.30")


def test_the_pipeline_end_to_end(sales, clock):
    sales.fire("schedule_visit")
    sales.ready_to_propose()
    sales.fire("propose")
    clock.advance(days=3)
    sales.fire("sign")
    result = sales.fire("deliver")
    assert (result.state, result.previous_state) == ("satisfaction", "contract")
    (contract,) = sales.contracts()
    assert contract.customer == sales.customer.id
    assert contract.amount == Money(Decimal("36000"), "CNY")
    assert (contract.owner, contract.status) == (sales.ids["li"], "active")
    assert contract.signed_on == (T0 + timedelta(days=3)).date()
    assert contract.number == f"CT{contract.id:06d}"
    history = sales.engine.runtime.history("Opportunity", sales.lead.id)
    assert [(e["trigger"], e["from_state"], e["to_state"], e["actor"]) for e in history] == [
        (None, None, "lead", "li"),
        ("schedule_visit", "lead", "visit", "li"),
        ("propose", "visit", "proposal", "li"),
        ("sign", "proposal", "contract", "li"),
        ("deliver", "contract", "satisfaction", "li"),
    ]
    assert sales.get(actor=sales.li).probability == Decimal("1.00")


def test_propose_without_an_amount_fails_naming_the_field(sales):
    sales.fire("schedule_visit")
    sales.engine.records.update(
        "Opportunity",
        sales.lead.id,
        {"expected_close_date": "2027-04-30", "contact": sales.contact.id},
        actor=sales.li,
    )
    with pytest.raises(WorkflowError) as info:
        sales.fire("propose")
    assert failures(info) == ["missing required field(s) amount"]
    assert sales.get().stage == "visit"


def test_propose_names_every_missing_field(sales):
    sales.fire("schedule_visit")
    with pytest.raises(WorkflowError) as info:
        sales.fire("propose")
    assert failures(info) == ["missing required field(s) amount, expected_close_date, contact"]


def test_sign_creates_exactly_one_contract(sales):
    sales.fire("schedule_visit")
    sales.ready_to_propose()
    sales.fire("propose")
    sales.fire("sign")
    assert len(sales.contracts()) == 1
    assert sales.engine.records.list("Contract").total_count == 1


def test_sign_keeps_a_contract_that_already_exists(sales):
    existing = sales.engine.records.create(
        "Contract",
        {"customer": sales.customer.id, "opportunity": sales.lead.id, "number": "HT-1"},
        actor=sales.li,
    )
    sales.fire("schedule_visit")
    sales.ready_to_propose()
    sales.fire("propose")
    sales.fire("sign")
    assert [c.id for c in sales.contracts()] == [existing.id]


def test_lose_without_a_reason_fails(sales):
    with pytest.raises(WorkflowError) as info:
        sales.fire("lose")
    assert failures(info) == ["payload.reason is required"]
    with pytest.raises(WorkflowError) as info:
        sales.fire("lose", reason="too_expensive")
    assert failures(info)[0].startswith("payload.reason ")


def test_lose_records_the_reason_and_the_competitor(sales):
    rival = sales.engine.records.create("Competitor", {"name": "Food Weekly"}, actor=sales.li)
    sales.fire("schedule_visit")
    sales.fire("lose", reason="competitor", competitor=rival.id)
    lost = sales.get()
    assert (lost.stage, lost.lost_reason, lost.competitor) == ("lost", "competitor", rival.id)
    assert lost.probability == Decimal("0.00")


def test_reopen_is_for_the_sales_supervisor(sales):
    sales.fire("lose", reason="budget")
    with pytest.raises(WorkflowError) as info:
        sales.fire("reopen", sales.li)
    assert failures(info) == ["needs role sales_supervisor"]
    reopened = sales.fire("reopen", sales.chen).record
    assert (reopened.stage, reopened.lost_reason, reopened.probability) == (
        "lead",
        None,
        Decimal("0.10"),
    )


def test_reopen_only_within_90_days_of_losing(sales, clock):
    sales.fire("lose", reason="timing")
    clock.advance(days=90, seconds=1)
    with pytest.raises(WorkflowError) as info:
        sales.fire("reopen", sales.chen)
    assert failures(info) == ["condition sales.within_days failed"]
    again = sales.new_opportunity(title="Second try")
    sales.fire("lose", record=again, reason="timing")
    clock.advance(days=90)
    assert sales.fire("reopen", sales.chen, record=again).state == "lead"


def test_another_teams_supervisor_cannot_reopen(sales):
    sales.fire("lose", reason="price")
    with pytest.raises(NotFound):
        sales.fire("reopen", sales.qian)


def test_the_probability_follows_the_stage(sales):
    seen = [sales.get().probability]
    sales.fire("schedule_visit")
    seen.append(sales.get().probability)
    sales.ready_to_propose()
    for trigger in ("propose", "back", "propose", "sign", "deliver"):
        seen.append(sales.fire(trigger).record.probability)
    assert seen == [Decimal(p) for p in ("0.10", "0.25", "0.50", "0.25", "0.50", "1", "1")]


def test_a_probability_set_by_hand_holds_until_the_stage_changes(sales):
    sales.engine.records.update(
        "Opportunity", sales.lead.id, {"probability": "0.2"}, actor=sales.li
    )
    sales.fire("assign", sales.chen, user_id=sales.ids["li"])
    assert sales.get().probability == Decimal("0.20")
    assert sales.fire("schedule_visit").record.probability == Decimal("0.25")


def test_back_moves_one_stage_back(sales):
    sales.fire("schedule_visit")
    sales.ready_to_propose()
    sales.fire("propose")
    assert sales.fire("back").state == "visit"
    assert sales.fire("back").state == "lead"
    with pytest.raises(WorkflowError) as info:
        sales.fire("back")
    assert "valid here: assign, lose, schedule_visit" in str(info.value)


def test_the_supervisor_assigns_a_lead_to_a_manager_of_the_team(sales):
    sales.fire("assign", sales.chen, user_id=sales.ids["wang"])
    assert sales.get().owner == sales.ids["wang"]
    assert sales.get(actor=sales.wang).title == "2027 subscriptions"
    with pytest.raises(NotFound):
        sales.get(actor=sales.li)
    (*_, event) = sales.engine.runtime.history("Opportunity", sales.lead.id)
    assert (event["trigger"], event["payload"]) == ("assign", {"user_id": sales.ids["wang"]})


def test_assign_is_for_supervisors_only(sales):
    with pytest.raises(WorkflowError) as info:
        sales.fire("assign", sales.li, user_id=sales.ids["wang"])
    assert failures(info) == ["needs role sales_supervisor"]


def test_assign_refuses_a_user_of_another_team(sales):
    with pytest.raises(ValidationError) as info:
        sales.fire("assign", sales.chen, user_id=sales.ids["zhao"])
    (problem,) = info.value.problems
    assert (problem.entity, problem.field) == ("payload", "user_id")
    assert "zhao is not in your team" in problem.message
    assert sales.get().owner == sales.ids["li"]


def test_another_teams_manager_can_neither_see_nor_move_the_opportunity(sales):
    with pytest.raises(NotFound):
        sales.fire("schedule_visit", sales.zhao)
    with pytest.raises(NotFound):
        sales.get(actor=sales.zhao)
    assert sales.fire("schedule_visit", sales.chen).state == "visit"


def test_nothing_leaves_a_satisfied_customer(sales):
    sales.fire("schedule_visit")
    sales.ready_to_propose()
    for trigger in ("propose", "sign", "deliver"):
        sales.fire(trigger)
    with pytest.raises(WorkflowError, match="no transition leaves this state"):
        sales.fire("lose", reason="price")


# -- the eight-step version --------------------------------------------------------------------
def test_the_eight_step_example_replaces_the_shipped_pipeline(build, home, clock):
    shutil.copy(EIGHT_STEPS, home / "workflows" / "sales_pipeline.yaml")
    engine = build()
    wf = engine.workflows["sales_pipeline"]
    assert wf.origin == "admin" and len(wf.states) == 9
    assert any("replaces the one of shipped" in n for n in engine.workflow_notices)
    sales = Pipeline(engine)
    steps = ("schedule_visit", "build_trust", "uncover_needs", "research_solution")
    for trigger in steps:
        sales.fire(trigger)
    sales.ready_to_propose()
    for trigger in ("propose", "sign", "deliver"):
        sales.fire(trigger)
    history = engine.runtime.history("Opportunity", sales.lead.id)
    assert [e["to_state"] for e in history] == [
        "lead",
        "visit",
        "trust",
        "needs",
        "solution",
        "proposal",
        "contract",
        "satisfaction",
    ]
    assert len(sales.contracts()) == 1
    assert sales.get().probability == Decimal("1.00")
