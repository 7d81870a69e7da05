"""Workflow actions and conditions of the sales pipeline.

Each is registered under a ``sales.`` name that workflow YAML refers to; each receives the
runtime's action context (``ctx.engine``, ``ctx.record``, ``ctx.actor``, ``ctx.payload``,
``ctx.from_state``, ``ctx.to_state``...) and its checked parameters. Actions run inside the
transition's transaction and write through the record API on the actor's behalf.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import Any

from guanxi.engine import Actor, FieldProblem, ValidationError


def acting_for(actor: Actor) -> Actor:
    """The system acting for ``actor``: passes permission checks, audited under their name."""
    return replace(actor, is_system=True)


def local_today(engine: Any) -> date:
    """Today in the installation's time zone (stored datetimes are naive UTC)."""
    return engine.now().replace(tzinfo=UTC).astimezone(engine.config.tz).date()


def _reference(ctx: Any, expression: str) -> Any:
    """The value of ``payload.<key>`` or ``record.<field>`` in ``ctx``."""
    source, _, key = expression.partition(".")
    if source == "payload" and key:
        return ctx.payload.get(key)
    if source == "record" and key in ctx.record:
        return ctx.record[key]
    raise ValidationError(
        FieldProblem(ctx.entity, None, f"{expression!r} is not payload.<key> or record.<field>")
    )


# -- actions --------------------------------------------------------------------------------
def stage_probability(ctx: Any) -> None:
    """Set ``probability`` to the probability of the state the record enters.

    Meant for ``on_enter``. A self-transition (``assign``) keeps the value, so a
    probability a person set by hand holds until the stage changes; on creation the
    ``before_commit`` hook fills it instead (see computed.py).
    """
    if ctx.from_state is None or ctx.from_state == ctx.to_state:
        return
    probability = ctx.engine.workflows[ctx.workflow].states[ctx.to_state].probability
    if probability is None:
        return
    ctx.engine.records.update(
        ctx.entity,
        ctx.record.id,
        {"probability": Decimal(str(probability))},
        actor=acting_for(ctx.actor),
    )


def assign_to(ctx: Any, user: str) -> None:
    """Hand the record to the user named by ``user`` (``payload.<key>`` or ``record.<field>``).

    The user must be active; a supervisor (anyone but an admin) may hand records only to
    users of their own team and its sub-teams.
    """
    user_id = _reference(ctx, user)
    key = user.partition(".")[2]
    where = "payload" if user.startswith("payload.") else ctx.entity

    def refuse(message: str) -> ValidationError:
        return ValidationError(FieldProblem(where, key, message))

    if user_id is None:
        raise refuse("is required")
    page = ctx.engine.records.list("User", filter={"id": {"eq": user_id}}, first=1)
    if not page.records or page.records[0].active is False:
        raise refuse(f"there is no active user #{user_id}")
    target = page.records[0]
    actor = ctx.actor
    if not actor.is_admin and target.team not in actor.team_ids:
        raise refuse(f"{target.username} is not in your team")
    ctx.engine.records.update(
        ctx.entity, ctx.record.id, {"owner": target.id}, actor=acting_for(actor)
    )


def create_contract(ctx: Any, status: str = "active") -> None:
    """Create the ``Contract`` of an opportunity unless a live one exists for it.

    The contract takes the opportunity's customer, amount and owner, is signed today and
    starts in ``status``; its number is given by the ``before_commit`` hook.
    """
    engine = ctx.engine
    opportunity = ctx.record
    existing = engine.records.list(
        "Contract", filter={"opportunity": {"id": {"eq": opportunity.id}}}, first=1
    )
    if existing.total_count:
        return
    engine.records.create(
        "Contract",
        {
            "customer": opportunity.customer,
            "opportunity": opportunity.id,
            "amount": opportunity.amount,
            "signed_on": local_today(engine),
            "status": status,
            "owner": opportunity.get("owner") or ctx.actor.id,
        },
        actor=acting_for(ctx.actor),
    )


# -- conditions -----------------------------------------------------------------------------
def within_days(ctx: Any, days: int, state: str | None = None) -> bool:
    """True when the record entered ``state`` (default: its current state) at most
    ``days`` days ago, by the workflow history."""
    state = state or ctx.from_state
    entered = None
    for event in ctx.engine.runtime.history(ctx.entity, ctx.record.id):
        if event["to_state"] == state and event["from_state"] != state:
            entered = event["at"]
    if entered is None:
        return False
    return ctx.engine.now() - entered <= timedelta(days=days)


ACTIONS: dict[str, tuple[Any, dict[str, Any] | None]] = {
    "sales.stage_probability": (stage_probability, None),
    "sales.assign_to": (
        assign_to,
        {
            "user": {
                "type": "string",
                "required": True,
                "description": "payload.<key> or record.<field> holding the user's id",
            }
        },
    ),
    "sales.create_contract": (
        create_contract,
        {
            "status": {
                "type": "string",
                "choices": ["draft", "active"],
                "description": "the new contract's status (default active)",
            }
        },
    ),
}

CONDITIONS: dict[str, tuple[Any, dict[str, Any] | None]] = {
    "sales.within_days": (
        within_days,
        {
            "days": {"type": "int", "required": True},
            "state": {"type": "string", "description": "default: the record's current state"},
        },
    ),
}
