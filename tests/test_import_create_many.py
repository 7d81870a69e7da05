"""``records.create_many`` as the importer drives it: batches written with one statement
per table, ``skip_invalid`` and row ``numbers``, and the write hooks of the sales plugin
seeing every record as ``create`` would show it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from guanxi.engine import Money, PermissionDenied, ValidationError
from guanxi.plugins import sales

BASE = {"id", "created_at", "updated_at", "created_by", "version", "deleted_at"}


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(sales, clock=clock)


@pytest.fixture
def acme(engine):
    return engine.records.create("Customer", {"name": "Acme", "code": "A-1"})


@pytest.fixture
def li(engine):
    user = engine.auth.create_user("li", roles=["customer_manager"])
    return engine.auth.actor_for(user.id)


def fields(record):
    return {k: v for k, v in record.items() if k not in BASE}


def test_bulk_written_records_read_back_as_records_created_one_by_one(engine, acme):
    payment = {
        "customer": acme.id,
        "amount": "1200.5 EUR",
        "paid_on": "2027-03-01",
        "method": "bank_transfer",
        "confirmed": True,
    }
    customer = {
        "name": "成都酒业",
        "phone": "+86 28 8888 6666",
        "credit_rating": 4,
        "notes": "两行\n备注",
        "level": "key",
        "parent": acme.id,
    }
    one = engine.records.create("Payment", payment)
    (many,) = engine.records.create_many("Payment", [payment])
    assert fields(engine.records.get("Payment", many)) == fields(one)
    first = engine.records.create("Customer", {**customer, "code": "X-1"})
    (second,) = engine.records.create_many(
        "Customer", [{**customer, "code": "X-2"}], allow_duplicate=True
    )
    assert fields(engine.records.get("Customer", second)) == {**fields(first), "code": "X-2"}
    trail = engine.records.audit_trail("Payment", many)
    assert [e["action"] for e in trail] == ["create"]
    assert trail[0]["changes"] == engine.records.audit_trail("Payment", one.id)[0]["changes"]


def test_skip_invalid_writes_the_good_rows_and_numbers_the_problems(engine, acme):
    problems = []
    rows = [
        {"customer": acme.id, "ordered_on": "2027-03-01"},
        {"customer": acme.id, "ordered_on": "yesterday"},
        {"customer": 999, "ordered_on": "2027-03-02"},
        {"customer": acme.id, "ordered_on": "2027-03-03", "amount": "5"},
    ]
    ids = engine.records.create_many(
        "Order", rows, skip_invalid=True, problems=problems, numbers=[2, 3, 5, 9]
    )
    assert [(p.row, p.field) for p in problems] == [(3, "ordered_on"), (5, "customer")]
    assert [engine.records.get("Order", i).ordered_on.day for i in ids] == [1, 3]
    assert engine.records.list("Order", first=0).total_count == 2


def test_a_row_a_hook_refuses_is_a_problem_of_that_row_and_leaves_nothing_behind(engine, acme, li):
    mine = engine.records.create("Customer", {"name": "Mine"}, actor=li)
    problems = []
    rows = [
        {"customer": mine.id, "amount": "10", "paid_on": "2027-03-01"},
        {"customer": mine.id, "amount": "20", "paid_on": "2027-03-02", "confirmed": True},
    ]
    ids = engine.records.create_many(
        "Payment", rows, actor=li, skip_invalid=True, problems=problems
    )
    assert [(p.row, p.field, p.message) for p in problems] == [
        (2, "confirmed", "only finance confirms payments")
    ]
    assert len(ids) == 1
    assert [p.amount.amount for p in engine.records.list("Payment").records] == [Decimal("10.00")]


def test_without_skip_invalid_a_hook_refusal_writes_nothing(engine, acme):
    rows = [
        {"customer": acme.id, "number": "CT-1", "start_date": "2027-03-01"},
        {"customer": acme.id, "number": "CT-2", "start_date": "2027-03-01",
         "end_date": "2027-02-01"},
    ]  # fmt: skip
    with pytest.raises(ValidationError) as info:
        engine.records.create_many("Contract", rows)
    assert [(p.row, p.field) for p in info.value.problems] == [(2, "end_date")]
    assert engine.records.list("Contract", first=0).total_count == 0


def test_a_refused_create_scope_is_a_row_problem_with_skip_invalid(engine, li):
    other = engine.auth.create_user("zhao", roles=["customer_manager"]).id
    problems = []
    rows = [{"name": "Mine"}, {"name": "Theirs", "owner": other}]
    ids = engine.records.create_many(
        "Customer", rows, actor=li, skip_invalid=True, problems=problems
    )
    assert len(ids) == 1 and [p.row for p in problems] == [2]
    with pytest.raises(PermissionDenied):
        engine.records.create_many("Customer", rows, actor=li)


def test_what_before_commit_computes_is_stored_and_audited(engine):
    (rid,) = engine.records.create_many("Customer", [{"name": "No code yet"}])
    customer = engine.records.get("Customer", rid)
    assert customer.code == f"C{rid:06d}"
    changes = engine.records.audit_trail("Customer", rid)[0]["changes"]
    assert changes["code"] == [None, customer.code]


def test_record_written_hooks_see_each_record(engine, acme, clock):
    rows = [
        {"customer": acme.id, "kind": "call", "subject": "intro"},
        {"customer": acme.id, "kind": "visit", "subject": "tasting"},
    ]
    engine.records.create_many("Activity", rows)
    assert engine.records.get("Customer", acme.id).last_activity_at == clock.now


def statements(engine, entity: str, rows: list[dict]) -> int:
    """How many SQL statements one create_many of ``rows`` sends."""
    engine.db.merge_local_stats()
    engine.records.create_many(entity, rows, batch_size=1000)
    return sum(stat.db_count for sql, stat in engine.db.local_stats.items() if sql)


def test_a_batch_asks_the_database_the_same_number_of_questions_however_long(engine):
    def questions(count: int, start: int) -> int:
        rows = [
            {"code": f"P{start + i}", "name": f"p{i}", "category": "service", "price": "1"}
            for i in range(count)
        ]
        return statements(engine, "Product", rows)

    assert questions(10, 0) == questions(500, 1000)


def test_orders_in_bulk_cost_the_same_questions_however_many(engine, acme):
    # the sales hook sums an order's lines; an order written in bulk has none to look for
    def questions(count: int) -> int:
        rows = [
            {"customer": acme.id, "ordered_on": "2027-03-01", "amount": str(i)}
            for i in range(count)
        ]
        return statements(engine, "Order", rows)

    assert questions(10) == questions(300)


def test_money_written_in_bulk_keeps_its_currency_and_scale(engine, acme):
    (rid,) = engine.records.create_many(
        "Order", [{"customer": acme.id, "ordered_on": "2027-03-01", "amount": "7 USD"}]
    )
    assert engine.records.get("Order", rid).amount == Money(Decimal("7.00"), "USD")


def test_rows_referring_to_a_record_made_earlier_in_the_transaction_read_back(engine):
    # Pony holds the new user's customers as a complete (empty) collection; the rows
    # written past it must not turn up as phantoms when they are read.
    with engine.records.transaction(write=True):
        owner = engine.records.create("User", {"username": "zhou"})
        ids = engine.records.create_many(
            "Customer", [{"name": f"Customer {i}", "owner": owner.id} for i in range(3)]
        )
        assert [engine.records.get("Customer", i).owner for i in ids] == [owner.id] * 3
        mine = engine.records.list("Customer", filter={"owner": {"id": {"eq": owner.id}}})
        assert mine.total_count == 3
