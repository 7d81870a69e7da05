"""The shared pool (公海) and hand-over of the sales plugin, through the record API.

Two teams: customer managers li and wang (East) and zhao (West), supervisors chen (East)
and qian (West), plus cai (finance) and gao (executive). Pool customers are made by the
system (no owner). Time is an injected clock; the return rule is driven by calling its
job inside a transaction, as the worker does, and the inbox by delivering the outbox.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pony.orm import db_session

from guanxi.engine import (
    ConflictError,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from guanxi.engine.permissions import add_member
from guanxi.engine.worker import deliver_outbox, run_periodic_jobs
from guanxi.plugins.sales import pool

from .conftest import T0

PEOPLE = {
    "li": ("customer_manager", "East"),
    "wang": ("customer_manager", "East"),
    "zhao": ("customer_manager", "West"),
    "chen": ("sales_supervisor", "East"),
    "qian": ("sales_supervisor", "West"),
    "cai": ("finance", None),
    "gao": ("executive", None),
}


class Sales:
    """The people, and helpers to make and read sales records."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.records = engine.records
        for team in ("East", "West"):
            engine.records.create("Team", {"name": team})
        self.ids = {
            name: engine.auth.create_user(
                name, roles=[role], team=team, display_name=name.title()
            ).id
            for name, (role, team) in PEOPLE.items()
        }
        self.admin_id = engine.auth.create_user("root", roles=["admin"]).id
        self.admin = engine.auth.actor_for(self.admin_id)
        for name in PEOPLE:
            setattr(self, name, engine.auth.actor_for(self.ids[name]))

    def customer(self, name: str, owner=None, *, allow_duplicate=False, **values):
        """A customer of ``owner`` (an actor), or of the pool."""
        data = {"name": name, **values}
        kwargs = {"allow_duplicate": allow_duplicate}
        if owner is not None:
            kwargs["actor"] = owner
        return self.records.create("Customer", data, **kwargs)

    def contact(self, customer, name="Zhang Wei", **values):
        return self.records.create("Contact", {"customer": customer.id, "name": name, **values})

    def owner(self, entity, record) -> int | None:
        return self.records.get(entity, record.id).owner

    def audit(self, entity, record, action):
        return [e for e in self.records.audit_trail(entity, record.id) if e["action"] == action]

    def run_return_rule(self) -> None:
        with self.records.transaction(write=True):
            pool.return_idle_customers(self.engine, self.engine.now())
        deliver_outbox(self.engine)

    def inbox(self, name: str, template: str) -> list[dict]:
        table = self.engine.classes["GxNotification"]
        with db_session:
            rows = table.select().filter(
                "lambda n: n.user_id == u and n.template == t",
                {},
                {"u": self.ids[name], "t": template},
            )
            return [dict(n.payload) for n in rows.order_by("lambda n: n.id", {}, {})]


@pytest.fixture
def build(make_engine, clock):
    def build(**settings):
        return make_engine(
            use_entry_points=True,
            plugins=("sales",),
            clock=clock,
            settings={k: str(v) for k, v in settings.items()},
        )

    return build


@pytest.fixture
def sales(build):
    return Sales(build())


# -- masking ------------------------------------------------------------------------------
def test_a_customer_manager_reads_a_pool_customer_with_its_phone_masked(sales):
    customer = sales.customer("Pool Liquor", phone="13800138000", website="pool.example")
    seen = sales.records.get("Customer", customer.id, actor=sales.li)
    assert (seen.name, seen.phone, seen.website) == ("Pool Liquor", "138****8000", "pool.example")
    listed = sales.records.list("Customer", actor=sales.li).records
    assert [c.phone for c in listed] == ["138****8000"]


def test_a_customer_manager_reads_pool_contacts_with_phone_mobile_and_email_masked(sales):
    customer = sales.customer("Pool Liquor")
    contact = sales.contact(
        customer, phone="8888 6666", mobile="+86 139 1234 5678", email="zhang.wei@pool.cn"
    )
    seen = sales.records.get("Contact", contact.id, actor=sales.li)
    assert (seen.name, seen.phone, seen.mobile, seen.email) == (
        "Zhang Wei",
        "****6666",
        "139****5678",
        "z***@pool.cn",
    )
    (listed,) = sales.records.list("Contact", actor=sales.li).records
    assert (listed.mobile, listed.email) == ("139****5678", "z***@pool.cn")


def test_claiming_a_customer_shows_its_own_and_its_contacts_details(sales):
    customer = sales.customer("Pool Liquor", phone="13800138000")
    contact = sales.contact(customer, mobile="13912345678", email="zw@pool.cn")
    claimed = pool.claim(sales.engine, customer.id, actor=sales.li)
    assert claimed.phone == "13800138000"
    seen = sales.records.get("Contact", contact.id, actor=sales.li)
    assert (seen.mobile, seen.email) == ("13912345678", "zw@pool.cn")


def test_a_customer_managers_own_customers_are_not_masked(sales):
    customer = sales.customer("Own Liquor", sales.li, phone="13800138000")
    contact = sales.contact(customer, mobile="13912345678")
    assert sales.records.get("Customer", customer.id, actor=sales.li).phone == "13800138000"
    assert sales.records.get("Contact", contact.id, actor=sales.li).mobile == "13912345678"


@pytest.mark.parametrize("who", ["cai", "gao", "admin"])
def test_finance_executives_and_admins_read_the_pool_unmasked(sales, who):
    customer = sales.customer("Pool Liquor", phone="13800138000")
    contact = sales.contact(customer, mobile="13912345678", email="zw@pool.cn")
    actor = getattr(sales, who)
    assert sales.records.get("Customer", customer.id, actor=actor).phone == "13800138000"
    seen = sales.records.get("Contact", contact.id, actor=actor)
    assert (seen.mobile, seen.email) == ("13912345678", "zw@pool.cn")


def test_a_supervisor_reads_their_teams_customers_plainly_and_the_pool_masked(sales):
    pooled = sales.customer("Pool Liquor", phone="13800138000")
    mine = sales.customer("Li Liquor", sales.li, phone="13800138001")
    assert sales.records.get("Customer", mine.id, actor=sales.chen).phone == "13800138001"
    assert sales.records.get("Customer", pooled.id, actor=sales.chen).phone == "138****8000"


def test_a_supervisor_does_not_read_another_teams_customers(sales):
    theirs = sales.customer("Zhao Liquor", sales.zhao)
    with pytest.raises(NotFound):
        sales.records.get("Customer", theirs.id, actor=sales.chen)


@pytest.mark.parametrize(
    ("entity", "flt"),
    [
        ("Contact", {"mobile": {"eq": "13912345678"}}),
        ("Contact", {"email": {"icontains": "zw@"}}),
        ("Customer", {"phone": {"startsWith": "138"}}),
        ("Contact", {"customer": {"phone": {"eq": "13800138000"}}}),
        ("Activity", {"customer": {"phone": {"eq": "13800138000"}}}),
    ],
)
def test_a_customer_manager_cannot_filter_on_masked_fields(sales, entity, flt):
    customer = sales.customer("Pool Liquor", phone="13800138000")
    sales.contact(customer, mobile="13912345678", email="zw@pool.cn")
    with pytest.raises(ValidationError) as info:
        sales.records.list(entity, actor=sales.li, filter=flt)
    assert "to filter on" in info.value.message


def test_a_customer_manager_cannot_order_by_a_masked_field(sales):
    with pytest.raises(ValidationError) as info:
        sales.records.list("Contact", actor=sales.li, order_by=[{"mobile": "ASC"}])
    assert info.value.field == "mobile"


def test_finance_filters_on_the_fields_masked_for_managers(sales):
    customer = sales.customer("Pool Liquor")
    sales.contact(customer, mobile="13912345678")
    page = sales.records.list("Contact", actor=sales.cai, filter={"mobile": {"eq": "13912345678"}})
    assert page.total_count == 1


def test_masking_a_page_of_pool_contacts_costs_the_same_queries_for_two_or_twenty(
    sales, monkeypatch
):
    def contacts(n: int) -> None:
        for i in range(n):
            customer = sales.customer(f"Pool n{n} i{i}")
            sales.contact(customer, name=f"c{n}-{i}", mobile=f"139{n:02d}{i:06d}")

    def queries(flt) -> int:
        count = 0
        real = sales.engine.db._exec_sql

        def spy(sql, *args, **kwargs):
            nonlocal count
            count += sql.lstrip().upper().startswith("SELECT")
            return real(sql, *args, **kwargs)

        monkeypatch.setattr(sales.engine.db, "_exec_sql", spy)
        page = sales.records.list("Contact", actor=sales.li, filter=flt, first=50)
        monkeypatch.undo()
        assert all("****" in c.mobile for c in page.records)
        return count

    contacts(2)
    contacts(20)
    two = queries({"name": {"startsWith": "c2-"}})
    twenty = queries({"name": {"startsWith": "c20-"}})
    assert two == twenty


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("13800138000", "138****8000"),
        ("+86 138-0013-8000", "138****8000"),
        ("0086 13800138000", "138****8000"),
        ("010-88886666", "010****6666"),
        ("8888 6666", "****6666"),
        ("12345", "****"),
    ],
)
def test_phones_keep_only_their_first_three_and_last_four_digits(value, shown):
    assert pool.mask_phone(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [("zhang.wei@example.com", "z***@example.com"), ("broken", "***"), ("@x.cn", "***")],
)
def test_emails_keep_only_their_first_letter_and_domain(value, shown):
    assert pool.mask_email(value) == shown


# -- claim ----------------------------------------------------------------------------------
def test_claiming_makes_the_manager_the_owner_and_is_audited(sales, clock):
    customer = sales.customer("Pool Liquor")
    clock.advance(hours=1)
    claimed = pool.claim(sales.engine, customer.id, actor=sales.li)
    assert (claimed.owner, claimed.owned_since) == (sales.ids["li"], T0 + timedelta(hours=1))
    (event,) = sales.audit("Customer", customer, "claim")
    assert (event["actor"], event["changes"]) == ("li", {"owner": [None, sales.ids["li"]]})


def test_a_customer_someone_owns_cannot_be_claimed(sales):
    customer = sales.customer("Li Liquor", sales.li)
    with pytest.raises(ConflictError) as info:
        pool.claim(sales.engine, customer.id, actor=sales.zhao)
    assert "Li owns it" in info.value.message
    assert sales.owner("Customer", customer) == sales.ids["li"]


def test_finance_may_not_claim(sales):
    customer = sales.customer("Pool Liquor")
    with pytest.raises(PermissionDenied):
        pool.claim(sales.engine, customer.id, actor=sales.cai)
    assert sales.owner("Customer", customer) is None


def test_claiming_a_missing_customer_is_not_found(sales):
    with pytest.raises(NotFound):
        pool.claim(sales.engine, 999, actor=sales.li)


def test_a_manager_claims_no_more_than_the_cap(build):
    sales = Sales(build(GUANXI_SALES_CLAIM_CAP=2))
    sales.customer("Own Liquor", sales.li)
    first, second = sales.customer("Pool A"), sales.customer("Pool B")
    pool.claim(sales.engine, first.id, actor=sales.li)
    with pytest.raises(LimitExceeded) as info:
        pool.claim(sales.engine, second.id, actor=sales.li)
    assert "you own 2 customers" in info.value.message
    assert sales.owner("Customer", second) is None
    pool.claim(sales.engine, second.id, actor=sales.wang)  # wang owns none yet


def test_a_released_customer_waits_out_the_cool_down_before_its_releaser_reclaims_it(build, clock):
    sales = Sales(build(GUANXI_SALES_RECLAIM_COOLDOWN_DAYS=10))
    customer = sales.customer("Li Liquor", sales.li)
    pool.release(sales.engine, customer.id, "not interested", actor=sales.li)
    clock.advance(days=9, hours=23)
    with pytest.raises(LimitExceeded) as info:
        pool.claim(sales.engine, customer.id, actor=sales.li)
    assert "you may claim it again from 2027-03-11 09:00" in info.value.message
    clock.advance(hours=1)
    assert pool.claim(sales.engine, customer.id, actor=sales.li).owner == sales.ids["li"]


def test_the_cool_down_binds_only_the_user_who_let_the_customer_go(sales):
    customer = sales.customer("Li Liquor", sales.li)
    pool.release(sales.engine, customer.id, "not interested", actor=sales.li)
    assert pool.claim(sales.engine, customer.id, actor=sales.wang).owner == sales.ids["wang"]


def race(engine, customer_id, actors) -> list[str]:
    barrier = threading.Barrier(len(actors))
    outcomes: list[str] = []

    def attempt(actor) -> None:
        barrier.wait()
        try:
            pool.claim(engine, customer_id, actor=actor)
            outcomes.append("won")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(a,)) for a in actors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


def test_of_two_managers_claiming_one_customer_at_once_exactly_one_wins(sales):
    for attempt in range(3):
        customer = sales.customer(f"Pool Liquor {attempt}")
        outcomes = race(sales.engine, customer.id, [sales.li, sales.wang])
        assert outcomes == ["conflict", "won"]
        owner = sales.owner("Customer", customer)
        assert owner in (sales.ids["li"], sales.ids["wang"])
        assert len(sales.audit("Customer", customer, "claim")) == 1


# -- release ----------------------------------------------------------------------------------
def test_releasing_puts_the_customer_back_in_the_pool_with_the_reason_audited(sales):
    customer = sales.customer("Li Liquor", sales.li, phone="13800138000")
    seen = pool.release(sales.engine, customer.id, "  budget frozen  ", actor=sales.li)
    assert (seen.owner, seen.owned_since, seen.phone) == (None, None, "138****8000")
    (event,) = sales.audit("Customer", customer, "release")
    assert event["changes"] == {"owner": [sales.ids["li"], None], "reason": "budget frozen"}


def test_a_release_needs_a_reason(sales):
    customer = sales.customer("Li Liquor", sales.li)
    with pytest.raises(ValidationError) as info:
        pool.release(sales.engine, customer.id, "  ", actor=sales.li)
    assert info.value.field == "reason"
    assert sales.owner("Customer", customer) == sales.ids["li"]


def test_a_customer_with_an_open_opportunity_or_active_contract_is_not_released(sales):
    customer = sales.customer("Li Liquor", sales.li)
    deal = sales.records.create(
        "Opportunity", {"title": "ads", "customer": customer.id}, actor=sales.li
    )
    sales.records.create("Contract", {"customer": customer.id, "status": "active"}, actor=sales.li)
    with pytest.raises(ConflictError) as info:
        pool.release(sales.engine, customer.id, "gone quiet", actor=sales.li)
    assert "has 1 open opportunity and 1 active contract" in info.value.message
    assert sales.records.get("Opportunity", deal.id).owner == sales.ids["li"]


def test_another_teams_manager_cannot_release_a_customer(sales):
    customer = sales.customer("Li Liquor", sales.li)
    with pytest.raises(NotFound):
        pool.release(sales.engine, customer.id, "mine now", actor=sales.zhao)
    assert sales.owner("Customer", customer) == sales.ids["li"]


def test_a_member_the_customer_is_shared_with_cannot_release_it(sales):
    customer = sales.customer("Li Liquor", sales.li)
    add_member(sales.engine, "Customer", customer.id, sales.ids["wang"], "edit")
    with pytest.raises(PermissionDenied):
        pool.release(sales.engine, customer.id, "not mine anyway", actor=sales.wang)
    assert sales.owner("Customer", customer) == sales.ids["li"]


def test_a_supervisor_releases_a_customer_of_their_team_and_sees_it_masked(sales):
    customer = sales.customer("Li Liquor", sales.li, phone="13800138001")
    released = pool.release(sales.engine, customer.id, "reorganised", actor=sales.chen)
    assert released.phone == "138****8001"
    assert sales.owner("Customer", customer) is None


def test_releasing_a_pool_customer_is_a_conflict(sales):
    customer = sales.customer("Pool Liquor")
    with pytest.raises(ConflictError):
        pool.release(sales.engine, customer.id, "twice", actor=sales.admin)


# -- transfers --------------------------------------------------------------------------------
def close(sales, deal, actor) -> None:
    sales.engine.runtime.fire_transition(
        "Opportunity", deal.id, "lose", actor, payload={"reason": "price"}
    )


def worked_customer(sales, actor, name="Li Liquor"):
    """A customer of ``actor`` with an open and a lost deal, an open and a done task."""
    customer = sales.customer(name, actor)
    create = sales.records.create
    open_deal = create("Opportunity", {"title": "open", "customer": customer.id}, actor=actor)
    lost_deal = create("Opportunity", {"title": "lost", "customer": customer.id}, actor=actor)
    close(sales, lost_deal, actor)
    open_task = create("Task", {"title": "call", "customer": customer.id}, actor=actor)
    done_task = create(
        "Task", {"title": "sent", "customer": customer.id, "done": True}, actor=actor
    )
    deal_task = create("Task", {"title": "quote", "opportunity": open_deal.id}, actor=actor)
    return customer, open_deal, lost_deal, open_task, done_task, deal_task


def test_a_supervisor_transfers_customers_with_their_open_opportunities_and_tasks(sales):
    customer, open_deal, lost_deal, open_task, done_task, deal_task = worked_customer(
        sales, sales.li
    )
    moved = pool.transfer_customers(
        sales.engine, [customer.id], sales.ids["wang"], actor=sales.chen, reason="li on leave"
    )
    assert moved == pool.Holdings(
        customers=(customer.id,),
        opportunities=(open_deal.id,),
        tasks=tuple(sorted((open_task.id, deal_task.id))),
    )
    wang, li = sales.ids["wang"], sales.ids["li"]
    assert sales.owner("Customer", customer) == wang
    assert sales.owner("Opportunity", open_deal) == wang
    assert sales.owner("Opportunity", lost_deal) == li
    assert (sales.owner("Task", open_task), sales.owner("Task", deal_task)) == (wang, wang)
    assert sales.owner("Task", done_task) == li
    (event,) = sales.audit("Opportunity", open_deal, "transfer")
    assert event["changes"] == {"owner": [li, wang], "reason": "li on leave"}


def test_a_supervisor_hands_pool_customers_to_their_team(sales):
    customer = sales.customer("Pool Liquor")
    pool.transfer_customers(sales.engine, [customer.id], sales.ids["li"], actor=sales.chen)
    assert sales.owner("Customer", customer) == sales.ids["li"]


def test_a_supervisor_transfers_only_within_their_teams(sales):
    east = sales.customer("Li Liquor", sales.li)
    west = sales.customer("Zhao Liquor", sales.zhao)
    with pytest.raises(ValidationError) as info:
        pool.transfer_customers(sales.engine, [east.id], sales.ids["zhao"], actor=sales.chen)
    assert info.value.field == "to_user_id"
    with pytest.raises(NotFound):
        pool.transfer_customers(sales.engine, [west.id], sales.ids["li"], actor=sales.chen)
    assert sales.owner("Customer", east) == sales.ids["li"]


def test_a_failed_transfer_moves_nothing(sales):
    east = sales.customer("Li Liquor", sales.li)
    west = sales.customer("Zhao Liquor", sales.zhao)
    with pytest.raises(NotFound):
        pool.transfer_customers(
            sales.engine, [east.id, west.id], sales.ids["wang"], actor=sales.chen
        )
    assert sales.owner("Customer", east) == sales.ids["li"]


def test_a_customer_manager_may_not_transfer_customers(sales):
    customer = sales.customer("Li Liquor", sales.li)
    with pytest.raises(PermissionDenied):
        pool.transfer_customers(sales.engine, [customer.id], sales.ids["wang"], actor=sales.li)


def test_customers_are_not_handed_to_a_deactivated_user(sales):
    customer = sales.customer("Li Liquor", sales.li)
    sales.records.update("User", sales.ids["wang"], {"active": False})
    with pytest.raises(ValidationError) as info:
        pool.transfer_customers(sales.engine, [customer.id], sales.ids["wang"], actor=sales.admin)
    assert "wang is deactivated" in info.value.message


def test_transfer_all_hands_over_what_a_user_works_on_and_leaves_their_history(sales):
    customer, open_deal, lost_deal, open_task, done_task, deal_task = worked_customer(
        sales, sales.li
    )
    live = sales.records.create(
        "Contract", {"customer": customer.id, "status": "active"}, actor=sales.li
    )
    done = sales.records.create(
        "Contract", {"customer": customer.id, "status": "completed"}, actor=sales.li
    )
    call = sales.records.create(
        "Activity", {"customer": customer.id, "kind": "call", "subject": "hi"}, actor=sales.li
    )
    moved = pool.transfer_all(sales.engine, sales.ids["li"], sales.ids["wang"], actor=sales.admin)
    assert moved == pool.Holdings(
        customers=(customer.id,),
        opportunities=(open_deal.id,),
        contracts=(live.id,),
        tasks=tuple(sorted((open_task.id, deal_task.id))),
    )
    li = sales.ids["li"]
    assert [sales.owner(e, r) for e, r in (("Opportunity", lost_deal), ("Task", done_task))] == [
        li,
        li,
    ]
    assert [sales.owner(e, r) for e, r in (("Contract", done), ("Activity", call))] == [li, li]
    assert pool.holdings(sales.engine, li).empty


def test_a_supervisor_transfers_all_only_between_users_of_their_teams(sales):
    sales.customer("Zhao Liquor", sales.zhao)
    with pytest.raises(PermissionDenied):
        pool.transfer_all(sales.engine, sales.ids["zhao"], sales.ids["li"], actor=sales.chen)
    with pytest.raises(ValidationError):
        pool.transfer_all(sales.engine, sales.ids["li"], sales.ids["li"], actor=sales.chen)


def test_a_user_who_still_works_on_records_cannot_be_deactivated(sales):
    worked_customer(sales, sales.li)
    with pytest.raises(ValidationError) as info:
        sales.records.update("User", sales.ids["li"], {"active": False}, actor=sales.admin)
    assert info.value.field == "active"
    assert info.value.problems[0].message == (
        "Li still owns 1 customer, 1 open opportunity and 2 open tasks: hand them to another "
        f"user first with transferAll(fromUserId: {sales.ids['li']}, toUserId: ...)"
    )
    assert sales.records.get("User", sales.ids["li"]).active is True


def test_after_transfer_all_the_user_can_be_deactivated(sales):
    worked_customer(sales, sales.li)
    pool.transfer_all(sales.engine, sales.ids["li"], sales.ids["wang"], actor=sales.chen)
    user = sales.records.update("User", sales.ids["li"], {"active": False}, actor=sales.admin)
    assert user.active is False


def test_a_user_who_still_owns_customers_cannot_be_deleted(sales):
    sales.customer("Li Liquor", sales.li)
    with pytest.raises(ConflictError) as info:
        sales.records.delete("User", sales.ids["li"], actor=sales.admin)
    assert "still owns 1 customer" in info.value.message


# -- the return rule ----------------------------------------------------------------------------
def test_an_idle_customer_returns_to_the_pool_after_a_notice_to_its_owner(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=5))
    customer = sales.customer("Li Liquor", sales.li)
    clock.advance(days=24, hours=23)
    sales.run_return_rule()
    assert sales.inbox("li", pool.NOTICE_TEMPLATE) == []
    clock.advance(hours=1)
    sales.run_return_rule()
    (notice,) = sales.inbox("li", pool.NOTICE_TEMPLATE)
    assert notice["record_id"] == customer.id
    assert notice["returns_at"] == (T0 + timedelta(days=30)).isoformat()
    assert sales.owner("Customer", customer) == sales.ids["li"]
    clock.advance(days=5)
    sales.run_return_rule()
    assert sales.owner("Customer", customer) is None
    (returned,) = sales.inbox("li", pool.RETURNED_TEMPLATE)
    assert (returned["record_id"], returned["idle_days"]) == (customer.id, 30)
    (event,) = sales.audit("Customer", customer, "return")
    assert event["changes"]["owner"] == [sales.ids["li"], None]
    assert event["actor"] == "system"


def test_an_owner_is_warned_once_per_idle_period(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=5))
    customer = sales.customer("Li Liquor", sales.li)
    clock.advance(days=26)
    sales.run_return_rule()
    sales.run_return_rule()
    assert len(sales.inbox("li", pool.NOTICE_TEMPLATE)) == 1
    sales.records.create(
        "Activity", {"customer": customer.id, "kind": "call", "subject": "hi"}, actor=sales.li
    )
    clock.advance(days=25)
    sales.run_return_rule()
    assert len(sales.inbox("li", pool.NOTICE_TEMPLATE)) == 2
    assert sales.owner("Customer", customer) == sales.ids["li"]


def test_customers_with_an_open_opportunity_or_an_active_contract_never_return(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=5))
    dealing = sales.customer("Dealing", sales.li)
    sales.records.create("Opportunity", {"title": "ads", "customer": dealing.id}, actor=sales.li)
    contracted = sales.customer("Contracted", sales.li)
    sales.records.create(
        "Contract", {"customer": contracted.id, "status": "active"}, actor=sales.li
    )
    closed = sales.customer("Closed deal and contract", sales.li)
    close(
        sales,
        sales.records.create(
            "Opportunity", {"title": "old", "customer": closed.id}, actor=sales.li
        ),
        sales.li,
    )
    sales.records.create("Contract", {"customer": closed.id, "status": "completed"}, actor=sales.li)
    clock.advance(days=200)
    for _ in range(2):  # warned, then returned
        sales.run_return_rule()
        clock.advance(days=6)
    assert (
        sales.owner("Customer", dealing) == sales.owner("Customer", contracted) == sales.ids["li"]
    )
    assert sales.owner("Customer", closed) is None
    assert [n["record_id"] for n in sales.inbox("li", pool.NOTICE_TEMPLATE)] == [closed.id]


def test_a_recent_activity_or_claim_keeps_a_customer(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=0))
    active = sales.customer("Active", sales.li)
    claimed = sales.customer("Claimed later")
    clock.advance(days=20)
    sales.records.create(
        "Activity", {"customer": active.id, "kind": "visit", "subject": "hi"}, actor=sales.li
    )
    pool.claim(sales.engine, claimed.id, actor=sales.li)
    clock.advance(days=20)
    sales.run_return_rule()
    assert sales.owner("Customer", active) == sales.owner("Customer", claimed) == sales.ids["li"]
    clock.advance(days=10)
    sales.run_return_rule()
    assert sales.owner("Customer", active) is sales.owner("Customer", claimed) is None


def test_a_customer_found_long_idle_is_warned_before_it_returns(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=5))
    customer = sales.customer("Li Liquor", sales.li)
    clock.advance(days=100)
    sales.run_return_rule()
    (notice,) = sales.inbox("li", pool.NOTICE_TEMPLATE)
    assert notice["returns_at"] == (T0 + timedelta(days=105)).isoformat()
    clock.advance(days=4)
    sales.run_return_rule()
    assert sales.owner("Customer", customer) == sales.ids["li"]
    clock.advance(days=1)
    sales.run_return_rule()
    assert sales.owner("Customer", customer) is None


def test_the_return_rule_is_off_with_zero_days(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=0))
    customer = sales.customer("Li Liquor", sales.li)
    clock.advance(days=1000)
    sales.run_return_rule()
    assert sales.owner("Customer", customer) == sales.ids["li"]
    assert sales.inbox("li", pool.NOTICE_TEMPLATE) == []


def test_the_former_owner_waits_out_the_cool_down_after_a_return(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=0))
    customer = sales.customer("Li Liquor", sales.li)
    clock.advance(days=30)
    sales.run_return_rule()
    with pytest.raises(LimitExceeded):
        pool.claim(sales.engine, customer.id, actor=sales.li)
    assert pool.claim(sales.engine, customer.id, actor=sales.wang).owner == sales.ids["wang"]


def test_the_worker_runs_the_return_rule(build, clock):
    sales = Sales(build(GUANXI_SALES_POOL_RETURN_DAYS=30, GUANXI_SALES_POOL_NOTICE_DAYS=0))
    customer = sales.customer("Li Liquor", sales.li)
    clock.advance(days=31)
    assert "sales.pool_return" in {job.name for job in sales.engine.periodic_jobs}
    run_periodic_jobs(sales.engine)
    assert sales.owner("Customer", customer) is None


# -- lookup -----------------------------------------------------------------------------------
@pytest.mark.parametrize("who", [*PEOPLE, "admin"])
def test_every_role_learns_who_works_a_customer_and_nothing_more(sales, who):
    customer = sales.customer("成都XX酒业有限公司", sales.zhao, phone="028-8765 4321")
    (match,) = pool.lookup(sales.engine, actor=getattr(sales, who), name="成都ＸＸ酒业")
    assert match == pool.Match(
        id=customer.id,
        name="成都XX酒业有限公司",
        owner_id=sales.ids["zhao"],
        owner="Zhao",
        team="West",
        matched_keys=("name",),
    )


def test_lookup_finds_customers_by_their_phone_or_a_contacts_mobile(sales):
    by_phone = sales.customer("Phone Co", sales.li, phone="028-8765 4321")
    by_mobile = sales.customer("Mobile Co")
    sales.contact(by_mobile, mobile="13912345678")
    found = pool.lookup(sales.engine, actor=sales.zhao, phone="+86 28 8765 4321")
    assert [(m.id, m.matched_keys) for m in found] == [(by_phone.id, ("phone",))]
    (pooled,) = pool.lookup(sales.engine, actor=sales.zhao, phone="139-1234-5678")
    assert (pooled.id, pooled.owner, pooled.team) == (by_mobile.id, None, None)
    assert pooled.matched_keys == ("contact.mobile",)


def test_a_match_on_name_and_phone_comes_first(sales):
    by_name = sales.customer("Chengdu Liquor", sales.li)
    both = sales.customer(
        "Chengdu Liquor Co., Ltd.", sales.li, phone="13800138000", allow_duplicate=True
    )
    sales.customer("Other", sales.li)
    found = pool.lookup(sales.engine, actor=sales.zhao, name="chengdu liquor", phone="13800138000")
    assert [m.id for m in found] == [both.id, by_name.id]


def test_a_lookup_needs_a_name_or_a_phone(sales):
    with pytest.raises(ValidationError) as info:
        pool.lookup(sales.engine, actor=sales.li, name=" ", phone=None)
    assert info.value.field == "name"
