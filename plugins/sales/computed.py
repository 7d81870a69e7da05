"""Computed and checked values of the sales records, kept by the plugin's write hooks.

``before_commit`` (inside every create and update, before commit) fills what a write
implies: numbers (customer code, quote and contract number) when left empty, a line's
price and amount, quote totals and order amounts from their lines, an opportunity's first
probability, who confirmed a payment; and it refuses references to another customer's
contact, opportunity, contract or order. ``record_written`` keeps the roll-ups of other
records: logging an activity moves its customer's and opportunity's ``last_activity_at``
(and the customer's ``next_follow_up_at``), and a line changed on its own updates its
quote's total or order's amount - all in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from guanxi.engine import (
    FieldProblem,
    Money,
    NotFound,
    PermissionDenied,
    RecordEvent,
    ValidationError,
)

from .pipeline import acting_for

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
    total = _sum_of_lines(engine, "QuoteLine", event.record_id)
    return {"total": total or Money(Decimal("0.00"), engine.config.currency)}


def _order(engine: Any, event: RecordEvent) -> dict[str, Any]:
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
    start, end = event.values["start_date"], event.values["end_date"]
    if start is not None and end is not None and end < start:
        raise ValidationError(FieldProblem("Contract", "end_date", "is before the start date"))
    return {}


def _payment(engine: Any, event: RecordEvent) -> dict[str, Any]:
    """Only finance (or an admin) confirms a payment or changes a confirmed one; the
    confirmation records who and when."""
    actor, values, changes = event.actor, event.values, event.changes
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


def _activity(engine: Any, event: RecordEvent) -> dict[str, Any]:
    return {"at": engine.now()} if event.values["at"] is None else {}


_COMPUTE: dict[str, Callable[[Any, RecordEvent], dict[str, Any]]] = {
    "Quote": _quote,
    "Order": _order,
    "Opportunity": _opportunity,
    "Contract": _contract,
    "Payment": _payment,
    "Activity": _activity,
}


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
def record_written(engine: Any, event: RecordEvent) -> None:
    if event.entity == "Activity":
        _activity_written(engine, event)
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
