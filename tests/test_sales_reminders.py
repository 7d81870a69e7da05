"""Reminders of the sales plugin (``plugins/sales/reminders.py``): the hourly job that
notifies owners of rotten deals, overdue follow-ups, overdue tasks and overdue instalments
once per idle period, and the computed GraphQL fields ``idleDays``, ``rotten`` and
``overdue``.

Customer managers li and wang (team East), finance users fang and gu; time is an injected
clock starting at T0 (2027-03-01 09:00 UTC; the installation's time zone is UTC). The
worker's pass runs the job and delivers the outbox to the inbox.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from guanxi.engine.worker import deliver_outbox, worker_pass
from guanxi.plugins.sales import reminders

from .conftest import T0
from .graphql_client import graphql_client
from .test_graphql_queries import QueryCounter


class World:
    """Two customer managers, two finance users, and li's customer with a contact."""

    def __init__(self, engine, clock) -> None:
        self.engine, self.clock = engine, clock
        records = engine.records
        records.create("Team", {"name": "East"})
        people = {
            "li": ("customer_manager", "East"),
            "wang": ("customer_manager", "East"),
            "fang": ("finance", None),
            "gu": ("finance", None),
        }
        self.ids = {
            name: engine.auth.create_user(name, roles=[role], team=team).id
            for name, (role, team) in people.items()
        }
        self.li, self.wang, self.fang, self.gu = (
            engine.auth.actor_for(self.ids[name]) for name in people
        )
        self.customer = records.create("Customer", {"name": "Sichuan Liquor"}, actor=self.li)
        self.contact = records.create(
            "Contact", {"customer": self.customer.id, "name": "Zhang Wei"}, actor=self.li
        )

    # -- making records ------------------------------------------------------------------
    def deal(self, title: str, *triggers: str):
        """An opportunity of li's, moved through ``triggers``."""
        deal = self.engine.records.create(
            "Opportunity",
            {
                "title": title,
                "customer": self.customer.id,
                "amount": "36000",
                "expected_close_date": "2027-06-30",
                "contact": self.contact.id,
            },
            actor=self.li,
        )
        for trigger in triggers:
            self.fire(deal, trigger)
        return deal

    def fire(self, deal, trigger: str, **payload):
        return self.engine.runtime.fire_transition(
            "Opportunity", deal.id, trigger, self.li, payload=payload
        )

    def activity(self, deal=None, customer=None, **values):
        data = {
            "customer": (customer or self.customer).id,
            "opportunity": deal.id if deal is not None else None,
            "kind": "call",
            "subject": "Called about the renewal",
            **values,
        }
        return self.engine.records.create("Activity", data, actor=self.li)

    def task(self, title: str, due, **values):
        data = {"title": title, "due": due, **values}
        return self.engine.records.create("Task", data, actor=self.li)

    def contract(self, *instalments: tuple[str, str]):
        """A contract of li's with instalments (due date, amount)."""
        return self.engine.records.create(
            "Contract",
            {
                "customer": self.customer.id,
                "amount": "30000",
                "status": "active",
                "instalments": [{"due_date": d, "amount": a} for d, a in instalments],
            },
            actor=self.li,
        )

    def instalments(self, contract):
        flt = {"contract": {"id": {"eq": contract.id}}}
        page = self.engine.records.list("PaymentPlan", filter=flt, order_by=[{"due_date": "ASC"}])
        return page.records

    # -- the job and the inbox ---------------------------------------------------------------
    def run(self):
        """One worker pass at the clock's time: the job (if its hour is unclaimed), then
        delivery of the whole outbox (a pass delivers at most 100 messages)."""
        result = worker_pass(self.engine)
        while deliver_outbox(self.engine)[0]:
            pass
        return result

    def job_runs(self) -> int:
        """How many hours the reminders job has run in."""
        runs = self.engine.classes["GxJobRun"]
        with self.engine.records.transaction():
            return runs.select().filter("lambda r: r.name == n", {}, {"n": reminders.JOB}).count()

    def inbox(self, user, kind: str | None = None) -> list[dict]:
        """The payloads of ``user``'s reminders (of ``kind``), oldest first; notices of
        other parts of the plugin (the pool's) are left out."""
        table = self.engine.classes["GxNotification"]
        with self.engine.records.transaction():
            rows = table.select().filter("lambda n: n.user_id == u", {}, {"u": user.id})
            found = [(n.id, n.template, dict(n.payload)) for n in rows]
        return [
            {**payload, "template": template}
            for _, template, payload in sorted(found)
            if template in reminders.TEMPLATES.values() and kind in (None, payload["kind"])
        ]


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(use_entry_points=True, plugins=("sales",), clock=clock)


@pytest.fixture
def world(engine, clock):
    return World(engine, clock)


# -- the job ----------------------------------------------------------------------------
def test_the_job_is_registered_hourly(engine):
    job = next(j for j in engine.periodic_jobs if j.name == "sales.reminders")
    assert job.options["interval_seconds"] == 3600


# -- rotten deals -------------------------------------------------------------------------
def test_a_deal_idle_past_its_stage_limit_notifies_its_owner_once(world, clock):
    deal = world.deal("Spring expo booth", "schedule_visit")  # visit: 14 days, from T0
    clock.advance(days=14, minutes=-1)
    world.run()
    assert world.inbox(world.li) == []
    clock.advance(minutes=2)
    world.run()
    [note] = world.inbox(world.li)
    assert note["template"] == "sales.rotten_deal"
    assert (note["entity"], note["record_id"], note["since"]) == (
        "Opportunity",
        deal.id,
        T0.isoformat(),
    )
    assert (
        note["subject"] == "Deal “Spring expo booth” has had no activity for 14 days (stage Visit)"
    )
    assert note["subjects"]["zh"] == "商机“Spring expo booth”已14天没有跟进（阶段：约见拜访）"
    assert world.inbox(world.wang) == []


def test_a_second_run_does_not_notify_a_rotten_deal_again(world, clock):
    world.deal("Spring expo booth", "schedule_visit")
    clock.advance(days=15)
    world.run()
    clock.advance(hours=1)
    world.run()
    assert world.job_runs() == 2  # the job ran in its new hour ...
    clock.advance(days=20)
    world.run()
    assert len(world.inbox(world.li, "rotten_deal")) == 1  # ... and sent nothing new


def test_a_new_activity_starts_a_new_idle_period_for_a_rotten_deal(world, clock):
    deal = world.deal("Spring expo booth", "schedule_visit")
    clock.advance(days=15)
    world.run()
    world.activity(deal)  # at T0 + 15 days
    clock.advance(days=14, minutes=-1)
    world.run()
    assert len(world.inbox(world.li, "rotten_deal")) == 1
    clock.advance(minutes=2)
    world.run()
    first, second = world.inbox(world.li, "rotten_deal")
    assert second["since"] == (T0 + timedelta(days=15)).isoformat()
    clock.advance(hours=1)
    world.run()
    assert len(world.inbox(world.li, "rotten_deal")) == 2


def test_entering_a_new_stage_restarts_a_deals_idle_period(world, clock):
    deal = world.deal("Spring expo booth", "schedule_visit")
    clock.advance(days=10)
    world.fire(deal, "propose")  # proposal: 21 days, from T0 + 10 days
    clock.advance(days=14)  # 24 days in the pipeline, 14 in proposal
    world.run()
    assert world.inbox(world.li) == []
    clock.advance(days=7, minutes=1)
    world.run()
    [note] = world.inbox(world.li)
    assert (note["stage"], note["since"], note["idle_days"]) == (
        "proposal",
        (T0 + timedelta(days=10)).isoformat(),
        21,
    )


def test_won_and_lost_deals_are_never_rotten(world, clock):
    world.deal("Signed", "schedule_visit", "propose", "sign")
    world.deal("Delivered", "schedule_visit", "propose", "sign", "deliver")
    lost = world.deal("Lost", "schedule_visit")
    world.fire(lost, "lose", reason="price")
    open_lead = world.deal("Still a lead")  # lead: 30 days
    clock.advance(days=100)
    world.run()
    notes = world.inbox(world.li, "rotten_deal")
    assert [n["record_id"] for n in notes] == [open_lead.id]


# -- follow-ups ---------------------------------------------------------------------------
def test_an_overdue_follow_up_notifies_the_customer_owner_once(world, clock):
    world.activity(next_follow_up_at=T0 + timedelta(days=2, hours=8))
    clock.advance(days=2, hours=8, minutes=-1)
    world.run()
    assert world.inbox(world.li) == []
    clock.advance(minutes=2)
    world.run()
    clock.advance(hours=1)
    world.run()
    [note] = world.inbox(world.li)
    assert note["template"] == "sales.follow_up_overdue"
    assert (note["entity"], note["record_id"]) == ("Customer", world.customer.id)
    assert note["subject"] == "Follow-up with Sichuan Liquor was due 2027-03-03 17:00"


def test_a_new_follow_up_date_notifies_again_once_it_passes(world, clock):
    world.activity(next_follow_up_at=T0 + timedelta(days=2))
    clock.advance(days=3)
    world.run()
    world.activity(next_follow_up_at=T0 + timedelta(days=6))  # logged at T0 + 3 days
    clock.advance(days=2)
    world.run()
    assert len(world.inbox(world.li, "follow_up_overdue")) == 1
    clock.advance(days=1, minutes=1)
    world.run()
    dues = [n["due"] for n in world.inbox(world.li, "follow_up_overdue")]
    assert dues == [(T0 + timedelta(days=2)).isoformat(), (T0 + timedelta(days=6)).isoformat()]


def test_a_pool_customers_overdue_follow_up_notifies_nobody(world, engine, clock):
    pooled = engine.records.create("Customer", {"name": "Guizhou Spirits", "owner": None})
    world.activity(customer=pooled, next_follow_up_at=T0 + timedelta(days=1))
    clock.advance(days=2)
    world.run()
    assert engine.records.get("Customer", pooled.id).owner is None
    for user in (world.li, world.wang, world.fang, world.gu):
        assert world.inbox(user) == []


# -- tasks --------------------------------------------------------------------------------
def test_an_overdue_task_notifies_its_owner_once(world, clock):
    task = world.task("Send the media kit", T0 + timedelta(days=1))
    clock.advance(days=1, minutes=1)
    world.run()
    clock.advance(hours=1)
    world.run()
    [note] = world.inbox(world.li)
    assert (note["template"], note["record_id"]) == ("sales.task_overdue", task.id)
    assert note["subject"] == "Task “Send the media kit” is overdue (due 2027-03-02 09:00)"


def test_a_done_task_does_not_notify(world, clock):
    world.task("Call back", T0 + timedelta(days=1), done=True)
    clock.advance(days=5)
    world.run()
    assert world.inbox(world.li) == []


def test_moving_an_overdue_tasks_due_notifies_again_when_the_new_due_passes(world, engine, clock):
    task = world.task("Send the media kit", T0 + timedelta(days=1))
    clock.advance(days=2)
    world.run()
    engine.records.update("Task", task.id, {"due": T0 + timedelta(days=4)}, actor=world.li)
    clock.advance(days=1)
    world.run()
    assert len(world.inbox(world.li, "task_overdue")) == 1
    clock.advance(days=1, minutes=1)
    world.run()
    assert len(world.inbox(world.li, "task_overdue")) == 2


# -- instalments --------------------------------------------------------------------------
def deactivate(engine, user) -> None:
    engine.records.update("User", user.id, {"active": False})


def test_an_overdue_instalment_notifies_the_contract_owner_and_active_finance_once(
    world, engine, clock
):
    deactivate(engine, world.gu)
    contract = world.contract(("2027-03-05", "10000"), ("2027-04-05", "20000"))
    due, later = world.instalments(contract)
    clock.advance(days=4)  # 2027-03-05: due today, not overdue yet
    world.run()
    assert world.inbox(world.li) == world.inbox(world.fang) == []
    clock.advance(days=1)
    world.run()
    clock.advance(hours=1)
    world.run()
    for user in (world.li, world.fang):
        [note] = world.inbox(user)
        assert (note["template"], note["record_id"]) == ("sales.instalment_overdue", due.id)
        assert note["subject"] == (
            f"Instalment of contract {contract.number} due 2027-03-05 is overdue: "
            "10,000.00 CNY outstanding"
        )
    assert world.inbox(world.gu) == world.inbox(world.wang) == []


def test_an_overdue_pending_instalment_turns_overdue(world, engine, clock):
    contract = world.contract(("2027-03-05", "10000"), ("2027-04-05", "20000"))
    clock.advance(days=5)
    world.run()
    assert [p.status for p in world.instalments(contract)] == ["overdue", "pending"]


def test_a_paid_instalment_does_not_notify(world, engine, clock):
    contract = world.contract(("2027-03-04", "10000"), ("2027-03-05", "20000"))
    engine.records.create(
        "Payment",
        {
            "customer": world.customer.id,
            "contract": contract.id,
            "amount": "10000",
            "paid_on": "2027-03-02",
            "confirmed": True,
        },
        actor=world.fang,
    )
    paid, unpaid = world.instalments(contract)
    assert paid.status == "paid"
    clock.advance(days=10)
    world.run()
    assert [n["record_id"] for n in world.inbox(world.fang)] == [unpaid.id]


# -- the inbox over GraphQL -------------------------------------------------------------------
def test_reminders_reach_the_owners_inbox_over_graphql(world, engine, clock):
    world.task("Send the media kit", T0 + timedelta(days=1))
    clock.advance(days=2)
    world.run()
    token = engine.auth.issue_token(world.li.id).token
    with graphql_client(engine) as api:
        result = api.gql(
            "{ unreadCount notifications { nodes { template payload } } }", token=token
        )
    assert result["data"]["unreadCount"] == 1
    [node] = result["data"]["notifications"]["nodes"]
    assert node["template"] == "sales.task_overdue"
    assert (
        node["payload"]["subject"] == "Task “Send the media kit” is overdue (due 2027-03-02 09:00)"
    )


# -- computed fields ----------------------------------------------------------------------
FIELDS = """{
  customers(orderBy: [{id: ASC}]) { nodes { name idleDays } }
  opportunities(orderBy: [{id: ASC}]) { nodes { title idleDays rotten } }
  tasks(orderBy: [{id: ASC}]) { nodes { title overdue } }
  paymentPlans(orderBy: [{id: ASC}]) { nodes { dueDate overdue } }
}"""


def test_the_computed_fields_give_hand_computed_values(world, engine, clock):
    quiet = engine.records.create("Customer", {"name": "Guizhou Spirits"}, actor=world.li)
    fresh = world.deal("Fresh visit", "schedule_visit")
    stale = world.deal("Stale visit", "schedule_visit")
    world.deal("Won", "schedule_visit", "propose", "sign")
    world.task("Due soon", T0 + timedelta(days=30))
    world.task("Past due", T0 + timedelta(days=3))
    world.task("Done", T0 + timedelta(days=3), done=True)
    world.contract(("2027-03-10", "10000"), ("2027-03-16", "10000"))
    clock.advance(days=6, hours=5)  # T0 + 6 d 5 h
    world.activity(fresh)  # the customer's and the fresh deal's last activity
    clock.advance(days=9, hours=20)  # T0 + 16 d 1 h, 2027-03-17
    with graphql_client(engine) as api:
        data = api.gql(FIELDS)["data"]
    assert quiet.id > world.customer.id
    assert data["customers"]["nodes"] == [
        {"name": "Sichuan Liquor", "idleDays": 9},  # last activity 9 d 20 h ago
        {"name": "Guizhou Spirits", "idleDays": 16},  # created 16 d 1 h ago, no activity
    ]
    assert stale.id > fresh.id
    assert data["opportunities"]["nodes"] == [
        {"title": "Fresh visit", "idleDays": 9, "rotten": False},
        {"title": "Stale visit", "idleDays": 16, "rotten": True},  # visit: 14 days
        {"title": "Won", "idleDays": 16, "rotten": False},  # idle, but won
    ]
    assert data["tasks"]["nodes"] == [
        {"title": "Due soon", "overdue": False},
        {"title": "Past due", "overdue": True},
        {"title": "Done", "overdue": False},
    ]
    assert data["paymentPlans"]["nodes"] == [
        {"dueDate": "2027-03-10", "overdue": True},
        {"dueDate": "2027-03-16", "overdue": True},
    ]


def test_an_instalment_due_today_is_not_overdue(world, engine, clock):
    world.contract(("2027-03-05", "10000"))
    clock.advance(days=4, hours=14)  # 2027-03-05 23:00
    with graphql_client(engine) as api:
        data = api.gql("{ paymentPlans { nodes { overdue } } }")["data"]
    assert data["paymentPlans"]["nodes"] == [{"overdue": False}]


def test_the_computed_fields_agree_with_the_job(world, engine, clock):
    deal = world.deal("Stale visit", "schedule_visit")
    clock.advance(days=14)
    with graphql_client(engine) as api:
        rotten = api.gql("{ opportunities { nodes { rotten idleDays } } }")["data"]
    world.run()
    assert rotten["opportunities"]["nodes"] == [{"rotten": True, "idleDays": 14}]
    assert [n["record_id"] for n in world.inbox(world.li)] == [deal.id]


# -- cost -----------------------------------------------------------------------------------
@pytest.fixture
def counted(make_engine, clock):
    engine = make_engine(use_entry_points=True, plugins=("sales",), clock=clock, open=False)
    counter = QueryCounter()
    counter.install(engine)
    engine.open(migrate=True)
    return World(engine, clock), counter


def add_idle_records(world: World, n: int, start: int) -> None:
    """``n`` each of rotten deals, overdue follow-ups, tasks and instalments, and as many
    records that are due nothing (fresh deals, done tasks, paid-up future instalments)."""
    engine = world.engine
    for i in range(start, start + n):
        customer = engine.records.create("Customer", {"name": f"Customer {i}"}, actor=world.li)
        world.activity(customer=customer, next_follow_up_at=world.clock.now)
        world.deal(f"Visit {i}", "schedule_visit")
        world.task(f"Task {i}", world.clock.now)
        world.task(f"Done {i}", world.clock.now, done=True)
        world.contract((str(world.clock.now.date()), "100"), ("2030-01-01", "100"))


def selects_of_a_quiet_run(world: World, counter: QueryCounter) -> int:
    """SELECTs of one job run when everything due was notified before."""
    counter.count = 0
    assert reminders.run_reminders(world.engine) == {}
    return counter.count


def test_the_jobs_query_count_does_not_grow_with_the_number_of_records(counted, clock):
    world, counter = counted
    add_idle_records(world, 2, 0)
    clock.advance(days=15)
    world.run()
    few = selects_of_a_quiet_run(world, counter)
    add_idle_records(world, 20, 2)
    clock.advance(days=15)
    world.run()
    assert len(world.inbox(world.li, "rotten_deal")) == 22
    assert len(world.inbox(world.fang, "instalment_overdue")) == 22
    assert selects_of_a_quiet_run(world, counter) == few


def test_the_opportunity_fields_cost_the_same_queries_for_more_deals(counted, clock):
    world, counter = counted
    engine = world.engine
    query = "{ opportunities(first: 50) { nodes { idleDays rotten } } }"

    def selects(n: int) -> int:
        with graphql_client(engine) as api:
            api.gql("{ __typename }")  # sign-in and start-up work, not counted
            counter.count = 0
            nodes = api.gql(query)["data"]["opportunities"]["nodes"]
        assert len(nodes) == n
        return counter.count

    for i in range(2):
        world.deal(f"Deal {i}", "schedule_visit")
    few = selects(2)
    for i in range(2, 25):
        world.deal(f"Deal {i}", "schedule_visit")
    assert selects(25) == few


def test_instalment_dates_use_the_installations_time_zone(make_engine, clock):
    # 2027-03-05 20:00 UTC is already 2027-03-06 in Shanghai
    clock.now = T0.replace(day=5, hour=20)
    engine = make_engine(
        use_entry_points=True, plugins=("sales",), clock=clock, timezone="Asia/Shanghai"
    )
    world = World(engine, clock)
    world.contract(("2027-03-05", "10000"))
    world.run()
    [note] = world.inbox(world.fang)
    assert note["due_date"] == date(2027, 3, 5).isoformat()
