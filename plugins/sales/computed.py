"""Computed and checked values of the sales records, kept by the plugin's write hooks.

``before_commit`` (inside every create and update, before commit) fills what a write
implies: numbers (customer code, quote and contract number) when left empty, a line's
price and amount, quote totals and order amounts from their lines, an opportunity's first
probability, who confirmed a payment; and it refuses references to another customer's
contact, opportunity, contract or order. ``record_written`` keeps the roll-ups of other
records: logging an activity moves its customer's and opportunity's ``last_activity_at``
(and the customer's ``next_follow_up_at``), and a line changed on its own updates its
quote's total or order's amount - all in the same transaction.

Payments and receivables: a contract's ``received`` is the sum of its confirmed live
payments and ``receivable`` its amount less that; ``received`` is allocated to the
contract's live instalments earliest due date first (``PaymentPlan.paid_amount``), and an
instalment's ``status`` follows from :func:`instalment_status`. Payments and instalments
must be in the contract's currency. Everything is kept whenever a payment, an instalment
or the contract is written, deleted or restored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pony.orm import select

from guanxi.engine import (
    FieldProblem,
    Money,
    NotFound,
    PermissionDenied,
    RecordEvent,
    ValidationError,
)

from .pipeline import acting_for, local_today

CENT = Decimal("0.01")
#: Numbers given to records created without one: entity -> (field, prefix).
NUMBERS = {"Customer": ("code", "C"), "Quote": ("number", "Q"), "Contract": ("number", "CT")}
#: Parts whose amounts add up on their parent: part -> (parent ref, parent, parent field).
LINES = {"QuoteLine": ("quote", "Quote", "total"), "OrderLine": ("order", "Order", "amount")}
#: Refs that must point at a record of the same customer: field -> target entity.
SAME_CUSTOMER = {
    "contact": "Contact",
    "opportunity": "Opportunity",
    "contract": "Contract",
    "order": "Order",
}
#: The roles, besides admin, that may confirm a payment.
CONFIRMING_ROLES = frozenset({"finance"})
#: Payment fields whose change moves the received amount of its contract.
PAYMENT_MOVES = frozenset({"contract", "amount", "confirmed"})
#: Instalment fields whose change moves the allocation of its contract's payments.
INSTALMENT_MOVES = frozenset({"contract", "amount", "due_date"})


# -- before_commit --------------------------------------------------------------------------
def before_commit(engine: Any, event: RecordEvent) -> dict[str, Any] | None:
    if event.action not in ("create", "update"):
        return None
    values: dict[str, Any] = {}
    if event.entity in NUMBERS:
        values.update(_number(engine, event))
    if event.entity in LINES:
        values.update(_line_amount(engine, event))
    compute = _COMPUTE.get(event.entity)
    if compute is not None:
        values.update(compute(engine, event))
    _check_same_customer(engine, event)
    return values or None


def _number(engine: Any, event: RecordEvent) -> dict[str, Any]:
    field, prefix = NUMBERS[event.entity]
    if event.values[field] is not None:
        return {}
    base = f"{prefix}{event.record_id:06d}"
    candidate, n = base, 1
    while engine.records.list(event.entity, filter={field: {"eq": candidate}}, first=0).total_count:
        n += 1
        candidate = f"{base}-{n}"
    return {field: candidate}


def _line_amount(engine: Any, event: RecordEvent) -> dict[str, Any]:
    """A line's unit price (the product's when not given) and its amount."""
    values = event.values
    price = values["unit_price"]
    out: dict[str, Any] = {}
    if price is None:
        price = engine.records.get("Product", values["product"]).price
        if price is None:
            raise ValidationError(
                FieldProblem(event.entity, "unit_price", "is required: the product has no price")
            )
        out["unit_price"] = price
    factor = 1 - (values.get("discount") or 0) / Decimal(100)
    amount = (values["quantity"] * price.amount * factor).quantize(CENT, ROUND_HALF_UP)
    out["amount"] = Money(amount, price.currency)
    return out


def _sum_of_lines(engine: Any, part: str, parent_id: int) -> Money | None:
    """The sum of the live lines of one quote or order, or None when it has none."""
    parent_ref = LINES[part][0]
    lines = engine.records.scoped_query(part).filter(
        f"lambda x: x.{parent_ref}.id == p", {}, {"p": parent_id}
    )
    amounts = [(line.amount, line.amount_currency) for line in lines]
    if not amounts:
        return None
    currencies = sorted({currency for _, currency in amounts})
    if len(currencies) > 1:
        raise ValidationError(
            FieldProblem(
                LINES[part][1], "lines", f"mix currencies ({', '.join(currencies)}); use one"
            )
        )
    return Money(sum((amount for amount, _ in amounts), Decimal(0)), currencies[0])


def _quote(engine: Any, event: RecordEvent) -> dict[str, Any]:
    # a quote written in bulk has no lines yet: no need to ask the database
    total = None if event.bulk else _sum_of_lines(engine, "QuoteLine", event.record_id)
    return {"total": total or Money(Decimal("0.00"), engine.config.currency)}


def _order(engine: Any, event: RecordEvent) -> dict[str, Any]:
    if event.bulk:  # written by create_many: no lines, the amount stands as given
        return {}
    amount = _sum_of_lines(engine, "OrderLine", event.record_id)
    return {"amount": amount} if amount is not None else {}


def _opportunity(engine: Any, event: RecordEvent) -> dict[str, Any]:
    """A new opportunity starts with the probability of its first stage, unless given."""
    field = engine.runtime.state_field(event.entity)
    if event.action != "create" or field is None or event.values["probability"] is not None:
        return {}
    state = engine.runtime.workflow_for(event.entity).states.get(event.values[field])
    if state is None or state.probability is None:
        return {}
    return {"probability": Decimal(str(state.probability))}


def _contract(engine: Any, event: RecordEvent) -> dict[str, Any]:
    """Dates in order; ``received`` and ``receivable`` from the confirmed payments."""
    values = event.values
    start, end = values["start_date"], values["end_date"]
    if start is not None and end is not None and end < start:
        raise ValidationError(FieldProblem("Contract", "end_date", "is before the start date"))
    currency = contract_currency(engine, values["amount"])
    if event.action == "update" and "amount" in event.changes:
        if contract_currency(engine, event.changes["amount"][0]) != currency:
            _refuse_other_currencies(engine, event.record_id, currency)
    return _receivables(engine, event.record_id, values["amount"], currency)


def _payment(engine: Any, event: RecordEvent) -> dict[str, Any]:
    """Only finance (or an admin) confirms a payment or changes a confirmed one; the
    confirmation records who and when. A contract's payment is in the contract's currency."""
    actor, values, changes = event.actor, event.values, event.changes
    if event.action == "create" or {"contract", "amount"} & set(changes):
        _check_payment_currency(engine, values)
    may_confirm = actor.is_admin or bool(CONFIRMING_ROLES & set(actor.roles))
    if event.action == "create":
        was, now = False, values["confirmed"]
    else:
        was, now = changes.get("confirmed", (values["confirmed"], values["confirmed"]))
    if not may_confirm:
        if was != now:
            raise PermissionDenied("only finance confirms payments", field="confirmed")
        if was and changes:
            raise PermissionDenied(
                "a confirmed payment can only be changed by finance", field=sorted(changes)[0]
            )
    if was == now:
        return {}
    if now:
        return {"confirmed_by": actor.id, "confirmed_at": engine.now()}
    return {"confirmed_by": None, "confirmed_at": None}


def _payment_plan(engine: Any, event: RecordEvent) -> dict[str, Any]:
    """An instalment is in its contract's currency; its status follows from what is paid
    and its due date (:func:`instalment_status`) and is not set by hand."""
    values = event.values
    try:
        contract = engine.records.get("Contract", values["contract"])
    except NotFound:  # a ref kept from before whose contract went to the recycle bin
        contract = None
    amount = values["amount"]
    if contract is not None:
        currency = contract_currency(engine, contract.amount)
        if amount.currency != currency:
            raise ValidationError(
                FieldProblem(
                    "PaymentPlan",
                    "amount",
                    f"is in {amount.currency}, but contract {contract.number} is in "
                    f"{currency}: an instalment is in its contract's currency",
                )
            )
    paid = values["paid_amount"] or Money(Decimal("0.00"), amount.currency)
    status = instalment_status(amount, paid, values["due_date"], local_today(engine))
    given = values["status"]
    by_hand = "status" in event.changes if event.action == "update" else given != "pending"
    if by_hand and given != status and not event.actor.is_system:
        raise ValidationError(
            FieldProblem(
                "PaymentPlan",
                "status",
                f"follows from the confirmed payments and the due date (it is {status} "
                "now); it cannot be set by hand",
            )
        )
    return {"paid_amount": paid, "status": status}


def _activity(engine: Any, event: RecordEvent) -> dict[str, Any]:
    return {"at": engine.now()} if event.values["at"] is None else {}


_COMPUTE: dict[str, Callable[[Any, RecordEvent], dict[str, Any]]] = {
    "Quote": _quote,
    "Order": _order,
    "Opportunity": _opportunity,
    "Contract": _contract,
    "PaymentPlan": _payment_plan,
    "Payment": _payment,
    "Activity": _activity,
}


# -- payments and receivables ---------------------------------------------------------------
def instalment_status(amount: Any, paid: Any, due: date | None, today: date) -> str:
    """The status of an instalment: ``paid`` once ``paid`` covers ``amount``, else
    ``overdue`` when its due date is before ``today``, else ``pending``.

    ``amount`` and ``paid`` are Money or numbers (None counts as nothing); ``today`` is the
    installation's (``pipeline.local_today``). The reminders' overdue job and the
    allocation of payments both derive the status here.
    """
    if amount is not None and _value(paid) >= _value(amount):
        return "paid"
    if due is not None and due < today:
        return "overdue"
    return "pending"


def _value(money: Any) -> Decimal:
    if money is None:
        return Decimal(0)
    return Decimal(money.amount if isinstance(money, Money) else money)


def contract_currency(engine: Any, amount: Money | None) -> str:
    """A contract's currency: its amount's, else the installation's."""
    return amount.currency if amount is not None else engine.config.currency


def _check_payment_currency(engine: Any, values: Any) -> None:
    contract_id = values["contract"]
    if contract_id is None:
        return
    try:
        contract = engine.records.get("Contract", contract_id)
    except NotFound:  # a ref kept from before whose contract went to the recycle bin
        return
    currency = contract_currency(engine, contract.amount)
    amount = values["amount"]
    if amount.currency != currency:
        raise ValidationError(
            FieldProblem(
                "Payment",
                "amount",
                f"is in {amount.currency}, but contract {contract.number} is in {currency}: "
                "a contract is paid in its currency",
            )
        )


def _refuse_other_currencies(engine: Any, contract_id: int, currency: str) -> None:
    """A contract's currency changes only while its payments and instalments follow."""
    for entity, what in (("Payment", "payment"), ("PaymentPlan", "instalment")):
        rows = engine.records.scoped_query(entity)
        others = sorted(
            set(
                select(
                    x.amount_currency
                    for x in rows
                    if x.contract.id == contract_id and x.amount_currency != currency
                )
            )
        )
        if others:
            raise ValidationError(
                FieldProblem(
                    "Contract",
                    "amount",
                    f"is in {currency}, but the contract has {what}s in {', '.join(others)}: "
                    f"change the {what}s first",
                )
            )


def _received(engine: Any, contract_id: int, currency: str) -> Money:
    """The sum of the contract's confirmed live payments (one SQL aggregate)."""
    payments = engine.records.scoped_query("Payment")
    rows = select(
        (p.amount_currency, sum(p.amount))
        for p in payments
        if p.contract.id == contract_id and p.confirmed
    )[:]
    total = Decimal("0.00")
    for row_currency, amount in rows:
        if row_currency != currency:
            raise ValidationError(
                FieldProblem(
                    "Contract",
                    "received",
                    f"the confirmed payments are in {row_currency}, not in the contract's "
                    f"{currency}",
                )
            )
        total += Decimal(amount or 0)
    return Money(total, currency)


def _receivables(
    engine: Any, contract_id: int, amount: Money | None, currency: str
) -> dict[str, Any]:
    received = _received(engine, contract_id, currency)
    receivable = None if amount is None else Money(amount.amount - received.amount, currency)
    return {"received": received, "receivable": receivable}


def _check_same_customer(engine: Any, event: RecordEvent) -> None:
    """Refs to a contact, opportunity, contract or order must be of the record's customer."""
    values = event.values
    customer = values.get("customer")
    if customer is None:
        return
    problems = []
    for field, target in SAME_CUSTOMER.items():
        ref = values.get(field)
        if ref is None:
            continue
        if event.action == "update" and field not in event.changes:
            if "customer" not in event.changes:
                continue
        try:
            owner_customer = engine.records.get(target, ref).customer
        except NotFound:  # a ref kept from before whose record went to the recycle bin
            continue
        if owner_customer != customer:
            problems.append(
                FieldProblem(event.entity, field, f"{target} #{ref} belongs to another customer")
            )
    if problems:
        raise ValidationError(problems)


# -- record_written -------------------------------------------------------------------------
#: The entities whose writes :func:`record_written` acts on.
WRITTEN = frozenset({"Activity", "Payment", "PaymentPlan", "Contract", *LINES})


def record_written(engine: Any, event: RecordEvent) -> None:
    if event.entity == "Activity":
        _activity_written(engine, event)
    elif event.entity == "Payment":
        _payment_written(engine, event)
    elif event.entity == "PaymentPlan":
        _instalment_written(engine, event)
    elif event.entity == "Contract":
        _contract_written(engine, event)
    elif event.entity in LINES and event.action in ("update", "restore"):
        # Lines written through their quote or order are summed by the parent's own
        # before_commit; this catches a line changed or restored on its own.
        _refresh_parent(engine, event)


def _refs(event: RecordEvent, field: str) -> set[int]:
    """The record's ``field`` now and, when an update moved it, before."""
    ids = {event.values[field]}
    if field in event.changes:
        ids.add(event.changes[field][0])
    return {i for i in ids if i is not None}


def _activity_written(engine: Any, event: RecordEvent) -> None:
    acting = acting_for(event.actor)
    for customer in _refs(event, "customer"):
        _roll_up(engine, "Customer", customer, "customer", acting, follow_up=True)
    for opportunity in _refs(event, "opportunity"):
        _roll_up(engine, "Opportunity", opportunity, "opportunity", acting, follow_up=False)


def _roll_up(
    engine: Any, entity: str, record_id: int, ref: str, acting: Any, *, follow_up: bool
) -> None:
    """Set ``last_activity_at`` (and ``next_follow_up_at``) from the latest live activity."""
    latest = engine.records.list(
        "Activity",
        filter={ref: {"id": {"eq": record_id}}},
        order_by=[{"at": "DESC"}, {"id": "DESC"}],
        first=1,
    ).records
    values = {"last_activity_at": latest[0].at if latest else None}
    if follow_up:
        values["next_follow_up_at"] = latest[0].next_follow_up_at if latest else None
    _update_if_live(engine, entity, record_id, values, acting)


def _refresh_parent(engine: Any, event: RecordEvent) -> None:
    parent_ref, parent, field = LINES[event.entity]
    parent_id = event.values[parent_ref]
    try:
        current = engine.records.get(parent, parent_id)[field]
    except NotFound:  # restored together with its parent, which is still in the bin
        return
    total = _sum_of_lines(engine, event.entity, parent_id)
    if parent == "Quote" and total is None:
        total = Money(Decimal("0.00"), engine.config.currency)
    if total is not None and total != current:
        _update_if_live(engine, parent, parent_id, {field: total}, acting_for(event.actor))


def _update_if_live(
    engine: Any, entity: str, record_id: int, values: dict[str, Any], acting: Any
) -> None:
    try:
        engine.records.update(entity, record_id, values, actor=acting)
    except NotFound:  # the record is in the recycle bin: nothing to keep up to date
        return


def _payment_written(engine: Any, event: RecordEvent) -> None:
    """A confirmed payment written, or a payment (un)confirmed: its contracts' receivables."""
    if event.action == "update" and not PAYMENT_MOVES & set(event.changes):
        return
    confirmed = {event.values["confirmed"]}
    if "confirmed" in event.changes:
        confirmed.add(event.changes["confirmed"][0])
    if True not in confirmed:
        return
    acting = acting_for(event.actor)
    for contract_id in _refs(event, "contract"):
        settle_contract(engine, contract_id, acting)


def _instalment_written(engine: Any, event: RecordEvent) -> None:
    if event.action == "update" and not INSTALMENT_MOVES & set(event.changes):
        return  # paid_amount and status: this module's own writes, or the overdue job's
    acting = acting_for(event.actor)
    for contract_id in _refs(event, "contract"):
        allocate_payments(engine, contract_id, acting)


def _contract_written(engine: Any, event: RecordEvent) -> None:
    acting = acting_for(event.actor)
    if event.action == "restore":  # payments may have changed while it was in the bin
        settle_contract(engine, event.record_id, acting)
        allocate_payments(engine, event.record_id, acting)
    elif event.action == "update" and "received" in event.changes:
        allocate_payments(engine, event.record_id, acting)


def settle_contract(engine: Any, contract_id: int, acting: Any) -> None:
    """Store the contract's ``received`` and ``receivable``; a change reallocates the
    payments to its instalments (through the contract's ``record_written``)."""
    try:
        contract = engine.records.get("Contract", contract_id)
    except NotFound:  # in the recycle bin: restoring it settles it
        return
    currency = contract_currency(engine, contract.amount)
    values = _receivables(engine, contract_id, contract.amount, currency)
    engine.records.update("Contract", contract_id, values, actor=acting)


def allocate_payments(engine: Any, contract_id: int, acting: Any) -> None:
    """Allocate the contract's ``received`` to its live instalments, earliest due date
    first (then the earliest created): each takes what is left, up to its amount."""
    try:
        contract = engine.records.get("Contract", contract_id)
    except NotFound:  # in the recycle bin: restoring it allocates again
        return
    left = max(_value(contract.received), Decimal(0))
    today = local_today(engine)
    plans = (
        engine.records.scoped_query("PaymentPlan")
        .filter("lambda x: x.contract.id == c", {}, {"c": contract_id})
        .order_by("lambda x: (x.due_date, x.id)", {}, {})
    )
    changes: list[tuple[int, dict[str, Any]]] = []
    for plan in plans:
        paid = min(Decimal(plan.amount), left)
        left -= paid
        status = instalment_status(plan.amount, paid, plan.due_date, today)
        stored = (plan.paid_amount, plan.paid_amount_currency, plan.status)
        if stored != (paid, plan.amount_currency, status):
            changes.append(
                (plan.id, {"paid_amount": Money(paid, plan.amount_currency), "status": status})
            )
    for plan_id, values in changes:  # after the read: updates flush as they go
        engine.records.update("PaymentPlan", plan_id, values, actor=acting)
