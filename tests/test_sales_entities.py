"""The sales plugin's entities: what each needs, what is computed, who may work which.

Every test runs against the installed ``sales`` plugin with real users, roles and teams:
customer managers li and wang in team East, zhao in team West, supervisor chen of East,
finance fang and executive boss.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from guanxi.engine import SYSTEM, Money, NotFound, PermissionDenied, ValidationError

from .conftest import T0

SALES_ENTITIES = (
    "Customer",
    "Contact",
    "Product",
    "Competitor",
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


class Sales:
    """Teams, users with roles, and the records most tests start from (owned by li)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        east = engine.records.create("Team", {"name": "East"}).id
        engine.records.create("Team", {"name": "West"})
        engine.records.create("Team", {"name": "East/1", "parent": east})
        people = {
            "li": ("customer_manager", "East"),
            "wang": ("customer_manager", "East/1"),
            "zhao": ("customer_manager", "West"),
            "chen": ("sales_supervisor", "East"),
            "fang": ("finance", None),
            "boss": ("executive", None),
        }
        self.users = {
            name: engine.auth.create_user(name, roles=[role], team=team).id
            for name, (role, team) in people.items()
        }
        self.li, self.wang, self.zhao, self.chen, self.fang, self.boss = (
            engine.auth.actor_for(self.users[name]) for name in people
        )
        create = engine.records.create
        self.product = create(
            "Product",
            {
                "code": "SUB-12",
                "name": "Monthly, 12 issues",
                "category": "subscription",
                "price": "1200 CNY",
            },
        )
        self.customer = create(
            "Customer",
            {"name": "Sichuan Liquor Co., Ltd.", "phone": "028 8888 1234"},
            actor=self.li,
        )
        self.contact = create(
            "Contact", {"customer": self.customer.id, "name": "Zhang Wei"}, actor=self.li
        )
        self.opportunity = create(
            "Opportunity",
            {"title": "2027 subscriptions", "customer": self.customer.id},
            actor=self.li,
        )
        self.contract = create(
            "Contract", {"customer": self.customer.id, "amount": "24000"}, actor=self.li
        )

    def get(self, entity: str, record_id: int, actor=SYSTEM):
        return self.engine.records.get(entity, record_id, actor=actor)


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(use_entry_points=True, plugins=("sales",), clock=clock)


@pytest.fixture
def sales(engine):
    return Sales(engine)


def problems(info: pytest.ExceptionInfo) -> set[str]:
    return {f"{p.entity}.{p.field}" for p in info.value.problems}


# -- descriptions ----------------------------------------------------------------------------
def test_every_sales_entity_and_field_is_labelled_in_english_and_chinese(engine):
    for name in SALES_ENTITIES:
        spec = engine.registry[name]
        assert spec.label and spec.labels.get("zh"), name
        for field in spec:
            if field.name in ("owner", "stage"):  # added by the engine
                continue
            assert field.label and field.labels.get("zh"), f"{name}.{field.name}"


def test_natural_keys_are_unique_fields(engine):
    keys = {name: engine.registry[name].natural_key for name in SALES_ENTITIES}
    assert keys["Customer"] == "code" and keys["Contract"] == "number"
    for name, key in keys.items():
        if key is not None:
            assert engine.registry[name].fields[key].unique, name


def test_a_taken_natural_key_is_refused_naming_the_field(engine, sales):
    with pytest.raises(ValidationError) as info:
        engine.records.create("Product", {"code": "SUB-12", "name": "Again", "category": "other"})
    assert problems(info) == {"Product.code"}


def test_customers_are_owned_shared_with_members_and_checked_for_duplicates(engine):
    customer = engine.registry["Customer"]
    assert customer.owned and customer.members
    assert customer.duplicate_keys == ("name", "phone")
    assert customer.reverses["branches"].source == "Customer"
    assert engine.registry["Contact"].owner_via == "customer"
    assert engine.registry["QuoteLine"].parent == "quote"


# -- every entity with its required fields ---------------------------------------------------
def _minimal(s: Sales) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Per entity: who creates it and the least data it needs."""
    c = s.customer.id
    return {
        "Customer": (s.li, {"name": "Chengdu Brewery"}),
        "Contact": (s.li, {"customer": c, "name": "Liu Yang"}),
        "Product": (SYSTEM, {"code": "AD-WEB", "name": "Web banner", "category": "advertising"}),
        "Competitor": (s.li, {"name": "Food Weekly"}),
        "Opportunity": (s.li, {"title": "Autumn fair booth", "customer": c}),
        "DevelopmentPlanStep": (
            s.li,
            {"opportunity": s.opportunity.id, "action": "Send the media kit"},
        ),
        "Quote": (s.li, {"customer": c}),
        "QuoteLine": (
            s.li,
            {
                "quote": s.engine.records.create("Quote", {"customer": c}, actor=s.li).id,
                "product": s.product.id,
                "quantity": 1,
            },
        ),
        "Contract": (s.li, {"customer": c}),
        "PaymentPlan": (
            s.li,
            {"contract": s.contract.id, "due_date": "2027-04-01", "amount": "12000"},
        ),
        "Invoice": (s.fang, {"contract": s.contract.id, "number": "FP-001", "amount": "12000"}),
        "Order": (s.li, {"customer": c, "ordered_on": "2027-03-01"}),
        "OrderLine": (
            s.li,
            {
                "order": s.engine.records.create(
                    "Order", {"customer": c, "ordered_on": "2027-03-01"}, actor=s.li
                ).id,
                "product": s.product.id,
                "quantity": 2,
            },
        ),
        "Payment": (s.li, {"customer": c, "amount": "12000", "paid_on": "2027-03-02"}),
        "Activity": (s.li, {"customer": c, "kind": "call", "subject": "First call"}),
        "Task": (s.li, {"title": "Send the contract"}),
    }


@pytest.mark.parametrize("entity", SALES_ENTITIES)
def test_each_entity_is_created_with_its_required_fields_and_refs(engine, sales, entity):
    actor, data = _minimal(sales)[entity]
    record = engine.records.create(entity, data, actor=actor)
    assert sales.get(entity, record.id, actor) == record
    required = {f.name for f in engine.registry[entity] if f.required}
    assert required <= set(data), "the minimal data covers every required field"


@pytest.mark.parametrize("entity", SALES_ENTITIES)
def test_each_entity_refuses_a_create_without_its_required_fields(engine, sales, entity):
    required = {f"{entity}.{f.name}" for f in engine.registry[entity] if f.required}
    if not required:
        pytest.skip(f"{entity} has no required field")
    with pytest.raises(ValidationError) as info:
        engine.records.create(entity, {})
    assert problems(info) == required


def test_numbers_are_given_when_left_empty(engine, sales):
    assert sales.customer.code == f"C{sales.customer.id:06d}"
    assert sales.contract.number == f"CT{sales.contract.id:06d}"
    quote = engine.records.create("Quote", {"customer": sales.customer.id}, actor=sales.li)
    assert quote.number == f"Q{quote.id:06d}"
    own = engine.records.create("Customer", {"name": "Coded", "code": "KH-7"}, actor=sales.li)
    assert own.code == "KH-7"


def test_a_taken_number_gets_a_suffix(engine, sales):
    next_id = sales.customer.id + 1
    engine.records.create("Customer", {"name": "Squatter", "code": f"C{next_id + 1:06d}"})
    assert engine.records.create("Customer", {"name": "Next"}).code == f"C{next_id + 1:06d}-2"


def test_branches_point_at_their_parent_company(engine, sales):
    branch = engine.records.create(
        "Customer",
        {"name": "Sichuan Liquor Chongqing", "parent": sales.customer.id},
        actor=sales.li,
    )
    page = engine.records.list("Customer", filter={"parent": {"id": {"eq": sales.customer.id}}})
    assert [r.id for r in page.records] == [branch.id]


def test_a_contract_may_not_end_before_it_starts(engine, sales):
    with pytest.raises(ValidationError) as info:
        engine.records.update(
            "Contract",
            sales.contract.id,
            {"start_date": "2027-06-01", "end_date": "2027-05-31"},
            actor=sales.li,
        )
    assert problems(info) == {"Contract.end_date"}


def test_refs_to_another_customers_contact_are_refused(engine, sales):
    other = engine.records.create("Customer", {"name": "Other Co"}, actor=sales.li)
    with pytest.raises(ValidationError) as info:
        engine.records.create(
            "Opportunity",
            {"title": "Wrong contact", "customer": other.id, "contact": sales.contact.id},
            actor=sales.li,
        )
    assert problems(info) == {"Opportunity.contact"}
    assert "belongs to another customer" in str(info.value.problems[0].message)


# -- computed totals -------------------------------------------------------------------------
def _quote(engine, sales, lines):
    return engine.records.create(
        "Quote", {"customer": sales.customer.id, "lines": lines}, actor=sales.li
    )


def test_a_quote_total_is_the_sum_of_its_discounted_lines(engine, sales):
    web = engine.records.create(
        "Product", {"code": "AD-WEB", "name": "Web banner", "category": "advertising"}
    )
    quote = _quote(
        engine,
        sales,
        [
            {"product": sales.product.id, "quantity": 3},  # 3 x 1200, the product's price
            {"product": web.id, "quantity": "2.5", "unit_price": "999.99", "discount": "10"},
        ],
    )
    lines = engine.records.list("QuoteLine", filter={"quote": {"id": {"eq": quote.id}}}).records
    assert sorted(line.amount.amount for line in lines) == [Decimal("2249.98"), Decimal("3600")]
    assert lines[0].unit_price == Money(Decimal("1200"), "CNY")
    assert quote.total == Money(Decimal("5849.98"), "CNY")


def test_a_quote_without_lines_totals_zero(engine, sales):
    assert _quote(engine, sales, []).total == Money(Decimal("0"), "CNY")


def test_replacing_the_lines_recomputes_the_total(engine, sales):
    quote = _quote(engine, sales, [{"product": sales.product.id, "quantity": 1}])
    quote = engine.records.update(
        "Quote",
        quote.id,
        {"lines": [{"product": sales.product.id, "quantity": 5}]},
        actor=sales.li,
    )
    assert quote.total.amount == Decimal("6000")
    assert quote.version == 2


def test_a_line_changed_on_its_own_updates_the_quote_total(engine, sales):
    quote = _quote(engine, sales, [{"product": sales.product.id, "quantity": 1}])
    (line,) = engine.records.list("QuoteLine", filter={"quote": {"id": {"eq": quote.id}}}).records
    engine.records.update("QuoteLine", line.id, {"quantity": 2}, actor=sales.li)
    assert sales.get("Quote", quote.id).total.amount == Decimal("2400")


def test_lines_in_two_currencies_are_refused(engine, sales):
    with pytest.raises(ValidationError) as info:
        _quote(
            engine,
            sales,
            [
                {"product": sales.product.id, "quantity": 1},
                {"product": sales.product.id, "quantity": 1, "unit_price": "100 EUR"},
            ],
        )
    assert problems(info) == {"Quote.lines"}
    assert engine.records.list("Quote").total_count == 0


def test_a_line_needs_a_price_when_its_product_has_none(engine, sales):
    free = engine.records.create("Product", {"code": "X", "name": "Unpriced", "category": "other"})
    with pytest.raises(ValidationError) as info:
        _quote(engine, sales, [{"product": free.id, "quantity": 1}])
    assert problems(info) == {"Quote.lines[0].unit_price"}


def test_an_order_amount_is_the_sum_of_its_lines(engine, sales):
    order = engine.records.create(
        "Order",
        {
            "customer": sales.customer.id,
            "ordered_on": "2027-03-01",
            "amount": "1",
            "lines": [
                {"product": sales.product.id, "quantity": 2},
                {"product": sales.product.id, "quantity": 1, "unit_price": "800"},
            ],
        },
        actor=sales.li,
    )
    assert order.amount == Money(Decimal("3200"), "CNY")


def test_an_order_without_lines_keeps_the_amount_given(engine, sales):
    order = engine.records.create(
        "Order",
        {"customer": sales.customer.id, "ordered_on": "2027-03-01", "amount": "5000"},
        actor=sales.li,
    )
    assert order.amount.amount == Decimal("5000")


# -- activities move the follow-up dates -----------------------------------------------------
def _log(engine, sales, at, follow_up=None, **extra):
    data = {"customer": sales.customer.id, "kind": "visit", "subject": "Visit", "at": at}
    return engine.records.create(
        "Activity", {**data, "next_follow_up_at": follow_up, **extra}, actor=sales.li
    )


def test_logging_an_activity_updates_the_customer_and_the_opportunity(engine, sales):
    follow_up = T0 + timedelta(days=7)
    _log(engine, sales, T0, follow_up, opportunity=sales.opportunity.id)
    customer = sales.get("Customer", sales.customer.id)
    assert (customer.last_activity_at, customer.next_follow_up_at) == (T0, follow_up)
    assert sales.get("Opportunity", sales.opportunity.id).last_activity_at == T0
    assert engine.records.audit_trail("Customer", sales.customer.id)[-1]["actor"] == "li"


def test_an_activity_without_a_time_happened_now(engine, sales, clock):
    activity = engine.records.create(
        "Activity",
        {"customer": sales.customer.id, "kind": "call", "subject": "Call"},
        actor=sales.li,
    )
    assert activity.at == clock.now
    assert sales.get("Customer", sales.customer.id).last_activity_at == clock.now


def test_an_older_activity_does_not_move_the_last_activity_back(engine, sales):
    _log(engine, sales, T0, T0 + timedelta(days=7))
    _log(engine, sales, T0 - timedelta(days=30), T0 - timedelta(days=20))
    customer = sales.get("Customer", sales.customer.id)
    assert customer.last_activity_at == T0
    assert customer.next_follow_up_at == T0 + timedelta(days=7)


def test_deleting_the_latest_activity_falls_back_to_the_one_before(engine, sales):
    _log(engine, sales, T0 - timedelta(days=3))
    latest = _log(engine, sales, T0)
    engine.records.delete("Activity", latest.id, actor=sales.li)
    assert sales.get("Customer", sales.customer.id).last_activity_at == T0 - timedelta(days=3)


def test_the_follow_up_dates_are_computed_not_written(engine, sales):
    with pytest.raises(ValidationError):
        engine.records.update(
            "Customer", sales.customer.id, {"last_activity_at": T0}, actor=sales.li
        )


# -- payments --------------------------------------------------------------------------------
def test_only_finance_confirms_a_payment(engine, sales, clock):
    payment = engine.records.create(
        "Payment",
        {
            "customer": sales.customer.id,
            "contract": sales.contract.id,
            "amount": "12000",
            "paid_on": "2027-03-02",
        },
        actor=sales.li,
    )
    with pytest.raises(PermissionDenied):
        engine.records.update("Payment", payment.id, {"confirmed": True}, actor=sales.li)
    confirmed = engine.records.update("Payment", payment.id, {"confirmed": True}, actor=sales.fang)
    assert (confirmed.confirmed_by, confirmed.confirmed_at) == (sales.users["fang"], clock.now)
    with pytest.raises(PermissionDenied):
        engine.records.update("Payment", payment.id, {"amount": "1"}, actor=sales.li)


def test_a_payment_of_another_customers_contract_is_refused(engine, sales):
    other = engine.records.create("Customer", {"name": "Other Co"}, actor=sales.li)
    with pytest.raises(ValidationError) as info:
        engine.records.create(
            "Payment",
            {
                "customer": other.id,
                "contract": sales.contract.id,
                "amount": "1",
                "paid_on": date(2027, 3, 2),
            },
            actor=sales.li,
        )
    assert problems(info) == {"Payment.contract"}


# -- who works which records -----------------------------------------------------------------
def test_a_customer_manager_works_only_their_own_customers(engine, sales):
    for entity, rid in (
        ("Customer", sales.customer.id),
        ("Contact", sales.contact.id),
        ("Opportunity", sales.opportunity.id),
        ("Contract", sales.contract.id),
    ):
        assert sales.get(entity, rid, sales.li).id == rid
        with pytest.raises(NotFound):
            sales.get(entity, rid, sales.zhao)
        with pytest.raises(NotFound):
            sales.get(entity, rid, sales.wang)  # same company, a sub-team: still not theirs
    assert engine.records.list("Customer", actor=sales.zhao).total_count == 0


def test_a_customer_manager_cannot_add_a_contact_to_another_managers_customer(engine, sales):
    with pytest.raises(ValidationError) as info:
        engine.records.create(
            "Contact", {"customer": sales.customer.id, "name": "Spy"}, actor=sales.zhao
        )
    assert problems(info) == {"Contact.customer"}


def test_a_supervisor_works_the_records_of_their_team(engine, sales):
    renamed = engine.records.update(
        "Customer", sales.customer.id, {"short_name": "Sichuan"}, actor=sales.chen
    )
    assert renamed.short_name == "Sichuan"
    assert sales.get("Contact", sales.contact.id, sales.chen).name == "Zhang Wei"
    with pytest.raises(PermissionDenied):
        engine.records.delete("Opportunity", sales.opportunity.id, actor=sales.chen)


def test_products_are_a_catalogue_sales_people_read(engine, sales):
    assert sales.get("Product", sales.product.id, sales.zhao).code == "SUB-12"
    with pytest.raises(PermissionDenied):
        engine.records.create(
            "Product", {"code": "NEW", "name": "New", "category": "other"}, actor=sales.li
        )


def test_executive_and_finance_read_everything_and_finance_issues_invoices(engine, sales):
    for actor in (sales.boss, sales.fang):
        assert sales.get("Customer", sales.customer.id, actor).id == sales.customer.id
    with pytest.raises(PermissionDenied):
        engine.records.update("Customer", sales.customer.id, {"notes": "x"}, actor=sales.fang)
    invoice = engine.records.create(
        "Invoice",
        {"contract": sales.contract.id, "number": "FP-9", "amount": "100"},
        actor=sales.fang,
    )
    assert sales.get("Invoice", invoice.id, sales.li).number == "FP-9"
    with pytest.raises(NotFound):
        sales.get("Invoice", invoice.id, sales.zhao)


def test_a_manager_may_delete_their_own_logged_activities_but_not_opportunities(engine, sales):
    activity = _log(engine, sales, T0)
    engine.records.delete("Activity", activity.id, actor=sales.li)
    with pytest.raises(PermissionDenied):
        engine.records.delete("Opportunity", sales.opportunity.id, actor=sales.li)
