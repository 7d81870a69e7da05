"""``guanxi demo`` data of the sales plugin (``plugins/sales/demo.py``), size small.

Building the demo takes a few seconds, so the tests that only read it share one build per
database kind (the ``built`` fixture, module-scoped, SQLite and PostgreSQL like
``make_engine``); the tests that need a build of their own (repeatability, the command
line) make it. Time is frozen at ``T0``, so "today" is 2027-03-01.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from guanxi.engine import Config, ConflictError, Engine, ValidationError
from guanxi.engine.cli import cli
from guanxi.plugins.sales import demo as sales_demo

from .conftest import T0, Clock, fresh_database

#: Cheap argon2id parameters: a dozen personas are hashed per build.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
TODAY = T0.date()
#: Everything the demo writes, for the digest.
ENTITIES = (
    "Team",
    "User",
    "Product",
    "Competitor",
    "Customer",
    "Contact",
    "Opportunity",
    "DevelopmentPlanStep",
    "Quote",
    "QuoteLine",
    "Contract",
    "PaymentPlan",
    "Invoice",
    "Order",
    "OrderLine",
    "Payment",
    "Activity",
    "Task",
)


def build_demo(database_url: str, home: Path, seed: int = 1) -> tuple[Engine, list[dict]]:
    engine = Engine(
        Config(home=home, database_url=database_url, plugins=("sales",)),
        use_entry_points=True,
        clock=Clock(),
    )
    engine.open(migrate=True)
    engine.auth.hasher = FAST
    rows = sales_demo.demo(engine, "small", seed, lambda done, total=None: None)
    return engine, rows


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def built(request, tmp_path_factory) -> Iterator[tuple[Engine, list[dict], str]]:
    """One small demo per database kind, shared by the tests that only read it:
    (engine, the persona logins, the database kind)."""
    home = tmp_path_factory.mktemp("demo")
    with fresh_database(request.param, home) as url:
        engine, rows = build_demo(url, home)
        try:
            yield engine, rows, request.param
        finally:
            engine.close()


@pytest.fixture
def build_another(built, tmp_path) -> Iterator:
    """Build a demo with another seed on a new database of the same kind."""
    engines: list[Engine] = []
    with ExitStack() as stack:

        def build(seed: int) -> Engine:
            folder = tmp_path / f"seed{seed}-{len(engines)}"
            folder.mkdir()
            url = stack.enter_context(fresh_database(built[2], folder))
            engine, _ = build_demo(url, folder, seed)
            engines.append(engine)
            return engine

        try:
            yield build
        finally:
            for engine in engines:
                engine.close()


@pytest.fixture
def engine(built) -> Engine:
    return built[0]


@pytest.fixture
def logins(built) -> list[dict]:
    return built[1]


def all_records(engine: Engine, entity: str, **filter_) -> list:
    """Every live record of ``entity`` (matching ``filter``), page by page, by id."""
    found, after = [], None
    while True:
        page = engine.records.list(
            entity, filter=filter_ or None, order_by=[{"id": "ASC"}], first=200, after=after
        )
        found.extend(page.records)
        if not page.has_next_page:
            return found
        after = page.end_cursor


def digest(engine: Engine) -> tuple[str, int]:
    """A SHA-256 of every record the demo wrote and of the workflow history, and how many
    records went into it."""
    sha, count = hashlib.sha256(), 0
    for entity in ENTITIES:
        for record in all_records(engine, entity):
            values = {k: v for k, v in record.items() if k != "password_hash"}
            sha.update(json.dumps([entity, values], sort_keys=True, default=str).encode())
            count += 1
    for opportunity in all_records(engine, "Opportunity"):
        history = engine.runtime.history("Opportunity", opportunity.id)
        sha.update(json.dumps(history, sort_keys=True, default=str).encode())
    return sha.hexdigest(), count


def by_name(engine: Engine, entity: str, name: str):
    (record,) = all_records(engine, entity, name={"eq": name})
    return record


# -- repeatable ---------------------------------------------------------------------------------
def test_same_seed_gives_the_same_data(engine, build_another):
    first, count = digest(engine)
    assert count > 1000
    assert digest(build_another(1)) == (first, count)


def test_another_seed_gives_other_data(engine, build_another):
    assert digest(build_another(2))[0] != digest(engine)[0]


# -- people -------------------------------------------------------------------------------------
def test_every_role_has_a_persona_who_can_sign_in(engine, logins):
    assert {row["role"] for row in logins} == set(engine.role_defs)
    for row in logins:
        session = engine.auth.login(row["username"], row["password"], address="test")
        assert row["role"] in session.user.roles


def test_each_sales_team_has_a_supervisor_and_customer_managers(logins):
    for team in ("华东销售部", "华南销售部", "华北销售部"):
        roles = Counter(row["role"] for row in logins if row["team"] == team)
        assert roles["sales_supervisor"] == 1
        assert roles["customer_manager"] >= 2


def test_an_unknown_size_is_refused_naming_it(engine):
    with pytest.raises(ValidationError, match="size: must be small or large"):
        sales_demo.demo(engine, "medium", 1, lambda done, total=None: None)


def test_a_second_run_is_refused_and_changes_nothing(engine):
    before = engine.records.list("Customer", first=0).total_count
    with pytest.raises(ConflictError, match="already holds .* customer"):
        sales_demo.demo(engine, "small", 1, lambda done, total=None: None)
    assert engine.records.list("Customer", first=0).total_count == before


def test_a_database_with_a_persona_username_is_refused(make_engine):
    engine = make_engine(use_entry_points=True, plugins=("sales",))
    engine.auth.create_user("liu.yang", roles=["customer_manager"])
    with pytest.raises(ConflictError, match="already holds the user.s. liu.yang"):
        sales_demo.demo(engine, "small", 1, lambda done, total=None: None)
    assert engine.records.list("Team", first=0).total_count == 0


# -- customers ----------------------------------------------------------------------------------
def test_about_five_percent_of_customers_are_key_customers(engine):
    levels = Counter(c.level for c in all_records(engine, "Customer"))
    share = levels["key"] / sum(levels.values())
    assert 0.04 <= share <= 0.07


def test_customers_spread_over_the_regions_with_contacts(engine):
    customers = all_records(engine, "Customer")
    assert {"华东", "华南", "华北"} <= {c.region for c in customers}
    with_contacts = {c.customer for c in all_records(engine, "Contact")}
    assert {c.id for c in customers} == with_contacts


def test_pool_customers_have_no_owner_and_include_regions_without_a_team(engine):
    pool = all_records(engine, "Customer", owner={"isNull": True})
    assert len(pool) >= 10
    assert {c.region for c in pool} >= {"西南", "华中"}


def test_hero_is_a_key_group_with_branches_and_five_contacts(engine):
    hero = by_name(engine, "Customer", sales_demo.HERO_NAME)
    assert hero.level == "key"
    branches = all_records(engine, "Customer", parent={"id": {"eq": hero.id}})
    assert {b.region for b in branches} == {"华东", "华南", "华北"}
    assert len(all_records(engine, "Contact", customer={"id": {"eq": hero.id}})) == 5


def test_hero_bought_in_all_three_product_lines(engine):
    hero = by_name(engine, "Customer", sales_demo.HERO_NAME)
    lines = all_records(engine, "OrderLine", order={"customer": {"id": {"eq": hero.id}}})
    categories = {engine.records.get("Product", line.product).category for line in lines}
    assert {"subscription", "advertising", "expo_agency"} <= categories


def test_hero_has_an_overdue_instalment(engine):
    hero = by_name(engine, "Customer", sales_demo.HERO_NAME)
    plans = all_records(engine, "PaymentPlan", contract={"customer": {"id": {"eq": hero.id}}})
    (overdue,) = [p for p in plans if p.status == "overdue"]
    assert overdue.due_date < TODAY
    assert overdue.paid_amount.amount < overdue.amount.amount


def test_the_duplicate_pair_is_found_by_the_duplicate_matcher(engine):
    ids = {by_name(engine, "Customer", name).id for name in sales_demo.DUPLICATE_NAMES}
    groups = engine.duplicates.groups("Customer")
    assert [set(g.record_ids) for g in groups] == [ids]
    assert set(groups[0].keys) == {"name", "phone"}


# -- the pipeline -------------------------------------------------------------------------------
def test_every_stage_has_deals_whose_history_leads_there(engine):
    wf = engine.runtime.workflow_for("Opportunity")
    deals = all_records(engine, "Opportunity")
    assert {d.stage for d in deals} == set(wf.states)
    begin = T0 - timedelta(days=sales_demo.HISTORY_DAYS + 31)
    for deal in deals:
        history = engine.runtime.history("Opportunity", deal.id)
        assert history[0]["from_state"] is None
        assert history[-1]["to_state"] == deal.stage
        times = [event["at"] for event in history]
        assert times == sorted(times)
        assert begin <= times[0] and times[-1] <= T0
        if deal.stage != wf.initial:
            assert len(history) > 1
        assert all(event["actor"] != "system" for event in history[1:])


def test_supervisors_assigned_and_reopened_deals(engine, logins):
    supervisors = {row["username"] for row in logins if row["role"] == "sales_supervisor"}
    fired = Counter()
    for deal in all_records(engine, "Opportunity"):
        for event in engine.runtime.history("Opportunity", deal.id):
            if event["trigger"] in ("assign", "reopen"):
                assert event["actor"] in supervisors
                fired[event["trigger"]] += 1
    assert fired["assign"] >= 1 and fired["reopen"] >= 1


def test_one_deal_was_lost_to_a_competitor(engine):
    lost = all_records(engine, "Opportunity", stage={"eq": "lost"})
    to_competitor = [d for d in lost if d.lost_reason == "competitor"]
    assert len(to_competitor) == 1
    assert to_competitor[0].competitor is not None
    assert all(d.lost_reason for d in lost)


def test_exactly_one_open_deal_is_rotten(engine):
    wf = engine.runtime.workflow_for("Opportunity")
    rotten = []
    for deal in all_records(engine, "Opportunity"):
        state = wf.states[deal.stage]
        if state.outcome is not None or state.rotten_after_days is None:
            continue
        idle = T0 - (deal.last_activity_at or deal.created_at)
        if idle > timedelta(days=state.rotten_after_days):
            rotten.append(deal)
    assert len(rotten) == 1
    assert rotten[0].stage == "proposal"


def test_signed_deals_have_their_contract_with_instalments(engine):
    won = [d for d in all_records(engine, "Opportunity") if d.stage in ("contract", "satisfaction")]
    assert won
    for deal in won:
        (contract,) = all_records(engine, "Contract", opportunity={"id": {"eq": deal.id}})
        plans = all_records(engine, "PaymentPlan", contract={"id": {"eq": contract.id}})
        assert sum(p.amount.amount for p in plans) == contract.amount.amount == deal.amount.amount


# -- money, activities, tasks --------------------------------------------------------------------
def test_orders_and_payments_span_two_years(engine):
    days = [o.ordered_on for o in all_records(engine, "Order")]
    assert min(days) <= TODAY - timedelta(days=600)
    assert max(days) >= TODAY - timedelta(days=30)
    assert max(days) < TODAY


def test_finance_confirmed_most_payments_and_some_await_it(engine, logins):
    finance = engine.auth.user_id(next(r["username"] for r in logins if r["role"] == "finance"))
    payments = all_records(engine, "Payment")
    confirmed = [p for p in payments if p.confirmed]
    assert {p.confirmed_by for p in confirmed} == {finance}
    assert len(payments) > len(confirmed) > len(payments) / 2


def test_some_tasks_and_follow_ups_are_overdue_and_some_are_not(engine):
    open_tasks = all_records(engine, "Task", done={"eq": False})
    assert any(t.due < T0 for t in open_tasks)
    assert any(t.due > T0 for t in open_tasks)
    follow_ups = [c.next_follow_up_at for c in all_records(engine, "Customer")]
    assert any(f is not None and f < T0 for f in follow_ups)
    assert any(f is not None and f > T0 for f in follow_ups)


def test_activities_are_in_the_past_and_logged_by_their_owner(engine):
    activities = all_records(engine, "Activity")
    assert len(activities) > 100
    assert all(a.at <= T0 for a in activities)
    assert all(a.owner is not None for a in activities)


# -- the command --------------------------------------------------------------------------------
def test_the_command_prints_the_persona_table_once(database_url, home):
    env = {
        "GUANXI_HOME": str(home),
        "GUANXI_DATABASE_URL": database_url,
        "GUANXI_PLUGINS": "sales",
    }
    result = CliRunner().invoke(cli, ["demo"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.count("password") == 1
    for persona in sales_demo.PERSONAS:
        assert result.output.count(persona.username) == 1
    again = CliRunner().invoke(cli, ["demo"], env=env)
    assert again.exit_code == 1
    assert "already holds" in again.output
    assert "password" not in again.output
