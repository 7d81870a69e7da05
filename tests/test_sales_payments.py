"""Payments and receivables: a contract's received and receivable amounts, and the
allocation of its confirmed payments to its instalments, earliest due date first.

Customer manager li owns the customer and a contract of 10,000 CNY with three
instalments; finance fang confirms payments; root is an admin (deleting and restoring).
The clock stands at 2027-03-01 09:00 (the installation's zone is UTC).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from guanxi.engine import SYSTEM, Money, ValidationError
from guanxi.plugins.sales.computed import instalment_status


def cny(amount: str) -> Money:
    return Money(Decimal(amount), "CNY")


class Books:
    """li's customer, a contract of 10,000 CNY and its three instalments."""

    def __init__(self, engine) -> None:
        self.engine = engine
        engine.records.create("Team", {"name": "East"})
        users = {
            "li": ("customer_manager", "East"),
            "fang": ("finance", None),
            "root": ("admin", None),
        }
        self.ids = {
            name: engine.auth.create_user(name, roles=[role], team=team).id
            for name, (role, team) in users.items()
        }
        self.li, self.fang, self.root = (engine.auth.actor_for(self.ids[n]) for n in users)
        self.customer = engine.records.create(
            "Customer", {"name": "Sichuan Liquor"}, actor=self.li
        ).id
        # given out of order on purpose: allocation follows the due dates
        self.contract = self.new_contract(
            "10000",
            [("2027-06-30", "3000"), ("2027-03-31", "2000"), ("2027-09-30", "5000")],
        )

    def new_contract(self, amount: str, instalments: list[tuple[str, str]]) -> int:
        return self.engine.records.create(
            "Contract",
            {
                "customer": self.customer,
                "amount": amount,
                "instalments": [{"due_date": d, "amount": a} for d, a in instalments],
            },
            actor=self.li,
        ).id

    def pay(self, amount: str, *, confirmed: bool = True, contract: int | None = None) -> int:
        payment = self.engine.records.create(
            "Payment",
            {
                "customer": self.customer,
                "contract": contract or self.contract,
                "amount": amount,
                "paid_on": "2027-02-20",
            },
            actor=self.li,
        ).id
        if confirmed:
            self.confirm(payment)
        return payment

    def confirm(self, payment: int, confirmed: bool = True) -> None:
        self.engine.records.update("Payment", payment, {"confirmed": confirmed}, actor=self.fang)

    def contract_totals(self, contract: int | None = None) -> tuple[Money, Money | None]:
        found = self.engine.records.get("Contract", contract or self.contract)
        return found.received, found.receivable

    def instalments(self, contract: int | None = None) -> list[tuple[str, Money, str]]:
        """(due date, paid, status) of the live instalments, by due date."""
        page = self.engine.records.list(
            "PaymentPlan",
            filter={"contract": {"id": {"eq": contract or self.contract}}},
            order_by=[{"due_date": "ASC"}],
        )
        return [(p.due_date.isoformat(), p.paid_amount, p.status) for p in page.records]

    def instalment_id(self, due: str) -> int:
        page = self.engine.records.list("PaymentPlan", filter={"due_date": {"eq": due}})
        return page.records[0].id


@pytest.fixture
def engine(make_engine, clock):
    return make_engine(use_entry_points=True, plugins=("sales",), clock=clock)


@pytest.fixture
def books(engine):
    return Books(engine)


def problems(info: pytest.ExceptionInfo) -> set[str]:
    return {f"{p.entity}.{p.field}" for p in info.value.problems}


# -- the status of an instalment --------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "paid", "due", "expected"),
    [
        (cny("100"), cny("100"), date(2027, 2, 1), "paid"),
        (cny("100"), cny("120"), date(2027, 4, 1), "paid"),
        (cny("100"), cny("99.99"), date(2027, 2, 28), "overdue"),
        (cny("100"), None, date(2027, 3, 1), "pending"),  # due today: not late yet
        (Decimal("100"), Decimal("40"), date(2027, 3, 2), "pending"),
        (cny("0"), None, date(2027, 2, 1), "paid"),
    ],
)
def test_the_status_of_an_instalment_follows_from_paid_amount_and_due_date(
    amount, paid, due, expected
):
    assert instalment_status(amount, paid, due, date(2027, 3, 1)) == expected


# -- received and receivable -------------------------------------------------------------------
def test_a_new_contract_has_received_nothing_and_its_instalments_are_pending(books):
    assert books.contract_totals() == (cny("0"), cny("10000"))
    assert books.instalments() == [
        ("2027-03-31", cny("0"), "pending"),
        ("2027-06-30", cny("0"), "pending"),
        ("2027-09-30", cny("0"), "pending"),
    ]


def test_a_contract_without_an_amount_has_no_receivable(books):
    contract = books.engine.records.create(
        "Contract", {"customer": books.customer}, actor=books.li
    ).id
    books.pay("500", contract=contract)
    assert books.contract_totals(contract) == (cny("500"), None)


def test_an_unconfirmed_payment_counts_for_nothing(books):
    books.pay("4000", confirmed=False)
    assert books.contract_totals() == (cny("0"), cny("10000"))
    assert [paid for _, paid, _ in books.instalments()] == [cny("0")] * 3


def test_confirmed_payments_are_received_and_allocated_earliest_due_first(books):
    books.pay("1500")
    books.pay("2500")
    assert books.contract_totals() == (cny("4000"), cny("6000"))
    assert books.instalments() == [
        ("2027-03-31", cny("2000"), "paid"),
        ("2027-06-30", cny("2000"), "pending"),
        ("2027-09-30", cny("0"), "pending"),
    ]


def test_payments_covering_several_instalments_pay_each_in_turn(books):
    books.pay("5000")
    books.pay("1000")
    assert books.instalments() == [
        ("2027-03-31", cny("2000"), "paid"),
        ("2027-06-30", cny("3000"), "paid"),
        ("2027-09-30", cny("1000"), "pending"),
    ]


def test_a_partly_paid_instalment_past_its_due_date_is_overdue(books, clock):
    clock.advance(days=40)  # 2027-04-10: the March instalment is late
    books.pay("1200")
    assert books.instalments()[0] == ("2027-03-31", cny("1200"), "overdue")
    books.pay("800")
    assert books.instalments()[0] == ("2027-03-31", cny("2000"), "paid")


def test_unconfirming_a_payment_takes_it_back_from_contract_and_instalments(books):
    books.pay("2000")
    second = books.pay("3000")
    books.confirm(second, confirmed=False)
    assert books.contract_totals() == (cny("2000"), cny("8000"))
    assert books.instalments() == [
        ("2027-03-31", cny("2000"), "paid"),
        ("2027-06-30", cny("0"), "pending"),
        ("2027-09-30", cny("0"), "pending"),
    ]


def test_changing_a_confirmed_payments_amount_reallocates(books):
    payment = books.pay("2000")
    books.engine.records.update("Payment", payment, {"amount": "2600"}, actor=books.fang)
    assert books.contract_totals() == (cny("2600"), cny("7400"))
    assert books.instalments()[1] == ("2027-06-30", cny("600"), "pending")


def test_deleting_a_payment_takes_it_back_and_restoring_it_brings_it_again(books):
    books.pay("1000")
    second = books.pay("4000")
    books.engine.records.delete("Payment", second, actor=books.root)
    assert books.contract_totals() == (cny("1000"), cny("9000"))
    assert books.instalments()[0] == ("2027-03-31", cny("1000"), "pending")
    books.engine.records.restore("Payment", second, actor=books.root)
    assert books.contract_totals() == (cny("5000"), cny("5000"))
    assert [paid for _, paid, _ in books.instalments()] == [cny("2000"), cny("3000"), cny("0")]


def test_a_payment_moved_to_another_contract_settles_both(books):
    other = books.new_contract("800", [("2027-05-01", "800")])
    payment = books.pay("800")
    books.engine.records.update("Payment", payment, {"contract": other}, actor=books.fang)
    assert books.contract_totals() == (cny("0"), cny("10000"))
    assert books.contract_totals(other) == (cny("800"), cny("0"))
    assert books.instalments(other) == [("2027-05-01", cny("800"), "paid")]


def test_an_overpayment_is_accepted_and_the_receivable_goes_negative(books):
    books.pay("10000")
    books.pay("250")
    assert books.contract_totals() == (cny("10250"), cny("-250"))
    assert books.instalments() == [
        ("2027-03-31", cny("2000"), "paid"),
        ("2027-06-30", cny("3000"), "paid"),
        ("2027-09-30", cny("5000"), "paid"),
    ]


def test_changing_the_contract_amount_changes_the_receivable(books):
    books.pay("3000")
    books.engine.records.update("Contract", books.contract, {"amount": "12000"}, actor=books.li)
    assert books.contract_totals() == (cny("3000"), cny("9000"))


def test_received_and_receivable_are_computed_not_written(books):
    with pytest.raises(ValidationError) as info:
        books.engine.records.update(
            "Contract", books.contract, {"received": "10000", "receivable": "0"}, actor=books.li
        )
    assert problems(info) == {"Contract.received", "Contract.receivable"}
    assert books.contract_totals() == (cny("0"), cny("10000"))


# -- instalments change ------------------------------------------------------------------------
def test_replacing_the_instalments_through_the_contract_reallocates(books):
    books.pay("3500")
    books.engine.records.update(
        "Contract",
        books.contract,
        {
            "instalments": [
                {"due_date": "2027-04-15", "amount": "1000"},
                {"due_date": "2027-02-15", "amount": "4000"},
                {"due_date": "2027-12-31", "amount": "5000"},
            ]
        },
        actor=books.li,
    )
    assert books.instalments() == [
        ("2027-02-15", cny("3500"), "overdue"),
        ("2027-04-15", cny("0"), "pending"),
        ("2027-12-31", cny("0"), "pending"),
    ]
    assert books.contract_totals() == (cny("3500"), cny("6500"))


def test_moving_an_instalments_due_date_reorders_the_allocation(books):
    books.pay("2500")
    september = books.instalment_id("2027-09-30")
    books.engine.records.update(
        "PaymentPlan", september, {"due_date": "2027-03-15"}, actor=books.fang
    )
    assert books.instalments() == [
        ("2027-03-15", cny("2500"), "pending"),
        ("2027-03-31", cny("0"), "pending"),
        ("2027-06-30", cny("0"), "pending"),
    ]


def test_deleting_an_instalment_gives_its_share_to_the_next_and_restoring_takes_it_back(books):
    books.pay("2000")
    march = books.instalment_id("2027-03-31")
    books.engine.records.delete("PaymentPlan", march, actor=books.root)
    assert books.instalments() == [
        ("2027-06-30", cny("2000"), "pending"),
        ("2027-09-30", cny("0"), "pending"),
    ]
    books.engine.records.restore("PaymentPlan", march, actor=books.root)
    assert books.instalments() == [
        ("2027-03-31", cny("2000"), "paid"),
        ("2027-06-30", cny("0"), "pending"),
        ("2027-09-30", cny("0"), "pending"),
    ]


def test_the_status_of_an_instalment_cannot_be_set_by_hand(books):
    march = books.instalment_id("2027-03-31")
    with pytest.raises(ValidationError) as info:
        books.engine.records.update("PaymentPlan", march, {"status": "paid"}, actor=books.fang)
    assert problems(info) == {"PaymentPlan.status"}
    assert "it is pending now" in info.value.problems[0].message
    assert books.instalments()[0] == ("2027-03-31", cny("0"), "pending")


def test_the_system_marking_an_instalment_overdue_gets_the_derived_status(books, clock):
    clock.advance(days=31)  # 2027-04-01
    march = books.instalment_id("2027-03-31")
    books.engine.records.update("PaymentPlan", march, {"status": "overdue"}, actor=SYSTEM)
    books.engine.records.update("PaymentPlan", march, {"status": "paid"}, actor=SYSTEM)
    assert books.instalments()[0] == ("2027-03-31", cny("0"), "overdue")


# -- the contract in the recycle bin -----------------------------------------------------------
def test_restoring_a_contract_settles_payments_confirmed_while_it_was_deleted(books):
    books.pay("1000")
    late = books.pay("1500", confirmed=False)
    books.engine.records.delete("Contract", books.contract, actor=books.root)
    books.confirm(late)
    books.engine.records.restore("Contract", books.contract, actor=books.root)
    assert books.contract_totals() == (cny("2500"), cny("7500"))
    assert books.instalments()[:2] == [
        ("2027-03-31", cny("2000"), "paid"),
        ("2027-06-30", cny("500"), "pending"),
    ]


def test_merging_contracts_moves_their_received_payments_to_the_survivor(books):
    other = books.new_contract("800", [("2027-05-01", "800")])
    books.pay("800", contract=other)
    books.pay("1000")
    books.engine.merge("Contract", books.contract, [other], actor=books.root)
    assert books.contract_totals() == (cny("1800"), cny("8200"))
    assert books.instalments()[0] == ("2027-03-31", cny("1800"), "pending")


# -- one currency per contract -----------------------------------------------------------------
def test_a_payment_in_another_currency_than_its_contract_is_refused(books):
    with pytest.raises(ValidationError) as info:
        books.pay("100 USD", confirmed=False)
    assert problems(info) == {"Payment.amount"}
    assert "is in USD, but contract CT" in info.value.problems[0].message
    assert books.engine.records.list("Payment").total_count == 0


def test_an_instalment_in_another_currency_is_refused_naming_the_row(books):
    with pytest.raises(ValidationError) as info:
        books.engine.records.update(
            "Contract",
            books.contract,
            {"instalments": [{"due_date": "2027-05-01", "amount": "10000 USD"}]},
            actor=books.li,
        )
    assert problems(info) == {"Contract.instalments[0].amount"}
    assert len(books.instalments()) == 3


def test_a_contract_keeps_its_currency_while_it_has_payments_in_it(books):
    books.pay("100", confirmed=False)
    with pytest.raises(ValidationError) as info:
        books.engine.records.update(
            "Contract",
            books.contract,
            {"amount": "1500 USD", "instalments": []},
            actor=books.li,
        )
    assert problems(info) == {"Contract.amount"}
    assert "has payments in CNY" in info.value.problems[0].message
    assert books.contract_totals() == (cny("0"), cny("10000"))


def test_a_contract_and_its_instalments_change_currency_together(books):
    books.engine.records.update(
        "Contract",
        books.contract,
        {"amount": "1500 USD", "instalments": [{"due_date": "2027-05-01", "amount": "1500 USD"}]},
        actor=books.li,
    )
    books.pay("1500 USD")
    assert books.contract_totals() == (Money(Decimal("1500"), "USD"), Money(Decimal(0), "USD"))
    assert books.instalments() == [("2027-05-01", Money(Decimal("1500"), "USD"), "paid")]
