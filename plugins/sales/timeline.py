"""The customer timeline (客户动态): what happened around a customer, newest first.

``Customer.timeline(first, after)`` in GraphQL pages through the engine's timeline
(``guanxi.engine.timeline``), which asks every plugin's ``timeline_entries`` hook. This
plugin answers for customers with six sources, each read with the caller as actor - an
entry the caller may not read is not there - and each with one ``ORDER BY ... LIMIT``
query per page:

========== ================================================ =============================
kind       source                                           at
========== ================================================ =============================
activity   the customer's activities                        ``Activity.at``
workflow   workflow history of the customer's opportunities  the event's time
           (and of the customer, when a workflow binds it)
contract   the customer's signed contracts                  ``signed_on`` (start of day)
payment    the customer's payments                          ``paid_on`` (start of day)
task       the customer's tasks                             ``created_at``
merge      duplicates merged into the customer              the merge's time
========== ================================================ =============================
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import strawberry
from pony.orm import select

from guanxi.engine import Actor, TimelineEntry, TimelineKey
from guanxi.engine.timeline import date_at, newest_first, newest_records, timeline
from guanxi.graphql.context import in_thread
from guanxi.graphql.entities import page_size
from guanxi.graphql.types import PageInfo

ENTITY = "Customer"

#: The few words entries need beyond the metadata's labels, per language.
WORDS = {
    "en": {
        "signed": "signed",
        "confirmed": "confirmed",
        "unconfirmed": "awaiting confirmation",
        "due": "due {due}",
        "done": "done",
        "created": "new, {state}",
        "merged": "Duplicates merged into this customer",
    },
    "zh": {
        "signed": "已签约",
        "confirmed": "已确认",
        "unconfirmed": "待确认",
        "due": "截止 {due}",
        "done": "已完成",
        "created": "新建，{state}",
        "merged": "重复客户已合并到此客户",
    },
}


def _words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS["en"])


# -- the hook ---------------------------------------------------------------------------------
def timeline_entries(
    engine: Any,
    actor: Actor,
    entity: str,
    record_id: int,
    before: TimelineKey | None,
    limit: int,
    language: str,
) -> list[TimelineEntry]:
    """The sales plugin's entries of a customer's timeline (see the module)."""
    if entity != ENTITY:
        return []
    found: list[TimelineEntry] = []
    for source in (_activities, _workflow_events, _contracts, _payments, _tasks, _merges):
        found.extend(source(engine, actor, record_id, before, limit, language))
    return found


def _list(
    engine: Any,
    actor: Actor,
    entity: str,
    mine: dict[str, Any],
    before: TimelineKey | None,
    limit: int,
    *,
    kind: str,
    field: str,
) -> list[Any]:
    """The newest ``limit`` records of ``entity`` matching ``mine`` after ``before``."""
    return newest_records(
        engine, entity, before, actor=actor, kind=kind, limit=limit, field=field, filter=mine
    )


def _of_customer(customer: int) -> dict[str, Any]:
    return {"customer": {"id": {"eq": customer}}}


def _choice(engine: Any, entity: str, field: str, value: Any, language: str) -> str | None:
    if value is None:
        return None
    for choice in engine.registry[entity].fields[field].choices:
        if choice.value == value:
            return choice.labels.get(language) or choice.label
    return str(value)


def _label(engine: Any, entity: str, language: str) -> str:
    return engine.registry[entity].label_in(language)


def _joined(*parts: Any) -> str | None:
    text = " · ".join(str(p) for p in parts if p not in (None, ""))
    return text or None


def _titled(label: str, name: Any) -> str:
    return label if name in (None, "") else f"{label} {name}"


def _money(value: Any) -> str | None:
    return None if value is None else f"{value.amount:,.2f} {value.currency}"


def _activities(engine, actor, customer, before, limit, language) -> list[TimelineEntry]:
    rows = _list(
        engine,
        actor,
        "Activity",
        {**_of_customer(customer), "at": {"isNull": False}},
        before,
        limit,
        kind="activity",
        field="at",
    )
    return [
        TimelineEntry(
            at=r.at,
            kind="activity",
            id=r.id,
            title=r.subject or _label(engine, "Activity", language),
            summary=_joined(_choice(engine, "Activity", "kind", r.kind, language), r.outcome),
            entity="Activity",
            record_id=r.id,
            actor_id=r.owner,
        )
        for r in rows
    ]


def _workflow_events(engine, actor, customer, before, limit, language) -> list[TimelineEntry]:
    """Stage changes of the customer's opportunities the caller may read (and of the
    customer itself when a workflow binds customers)."""
    records, runtime = engine.records, engine.runtime
    events = engine.classes["GxWorkflowEvent"]
    found: list[Any] = []
    titles: dict[int, str] = {}
    if runtime.state_field("Opportunity") is not None:
        readable = records.scoped_query("Opportunity", actor).filter(
            "lambda x: x.customer.id == c", {}, {"c": customer}
        )
        # a join in SQL: the events of the opportunities the caller may read
        history = select(
            e for e in events for o in readable if e.entity == "Opportunity" and e.record_id == o.id
        )
        found += newest_first(history, engine, before, kind="workflow", limit=limit)
        wanted = {e.record_id for e in found}
        if wanted and engine.policy.readable_field(records.spec("Opportunity"), actor, "title"):
            titles = dict(select((o.id, o.title) for o in readable if o.id in wanted))
    if runtime.state_field(ENTITY) is not None:
        own = events.select().filter(
            "lambda e: e.entity == n and e.record_id == c", {}, {"n": ENTITY, "c": customer}
        )
        found += newest_first(own, engine, before, kind="workflow", limit=limit)
        found.sort(key=lambda e: (e.at, e.id), reverse=True)
    out = []
    for event in found:
        name = titles.get(event.record_id) if event.entity == "Opportunity" else None
        title = name or f"{_label(engine, event.entity, language)} #{event.record_id}"
        out.append(
            TimelineEntry(
                at=event.at,
                kind="workflow",
                id=event.id,
                title=title,
                summary=_move(engine, event, language),
                entity=event.entity,
                record_id=event.record_id,
                actor_id=event.actor_id,
                actor=None if event.actor_id is not None else event.actor,
            )
        )
    return out


def _move(engine: Any, event: Any, language: str) -> str:
    """``Proposal → Contract (Sign)``, or ``new, Lead`` for a record's first state."""
    wf = engine.workflows.get(event.workflow)

    def state(name: str | None) -> str:
        found = wf.states.get(name) if wf is not None and name is not None else None
        return (found.labels.get(language) or found.label) if found else str(name)

    if event.from_state is None:
        return _words(language)["created"].format(state=state(event.to_state))
    move = f"{state(event.from_state)} → {state(event.to_state)}"
    transition = next(
        (t for t in (wf.transitions if wf else ()) if t.trigger == event.trigger), None
    )
    if transition is not None:
        return f"{move} ({transition.labels.get(language) or transition.label})"
    return f"{move} ({event.trigger})" if event.trigger else move


def _contracts(engine, actor, customer, before, limit, language) -> list[TimelineEntry]:
    rows = _list(
        engine,
        actor,
        "Contract",
        {**_of_customer(customer), "signed_on": {"isNull": False}},
        before,
        limit,
        kind="contract",
        field="signed_on",
    )
    words = _words(language)
    return [
        TimelineEntry(
            at=date_at(engine, r.signed_on),
            kind="contract",
            id=r.id,
            title=_titled(_label(engine, "Contract", language), r.number),
            summary=_joined(words["signed"], _money(r.amount)),
            entity="Contract",
            record_id=r.id,
            actor_id=r.owner,
        )
        for r in rows
    ]


def _payments(engine, actor, customer, before, limit, language) -> list[TimelineEntry]:
    rows = _list(
        engine,
        actor,
        "Payment",
        _of_customer(customer),
        before,
        limit,
        kind="payment",
        field="paid_on",
    )
    words = _words(language)
    return [
        TimelineEntry(
            at=date_at(engine, r.paid_on),
            kind="payment",
            id=r.id,
            title=_titled(_label(engine, "Payment", language), _money(r.amount)),
            summary=words["confirmed"] if r.confirmed else words["unconfirmed"],
            entity="Payment",
            record_id=r.id,
            actor_id=r.confirmed_by if r.confirmed_by is not None else r.created_by,
        )
        for r in rows
    ]


def _tasks(engine, actor, customer, before, limit, language) -> list[TimelineEntry]:
    rows = _list(
        engine,
        actor,
        "Task",
        _of_customer(customer),
        before,
        limit,
        kind="task",
        field="created_at",
    )
    words = _words(language)
    return [
        TimelineEntry(
            at=r.created_at,
            kind="task",
            id=r.id,
            title=r.title or _label(engine, "Task", language),
            summary=_joined(
                words["due"].format(due=f"{r.due:%Y-%m-%d %H:%M}") if r.due else None,
                words["done"] if r.done else None,
            ),
            entity="Task",
            record_id=r.id,
            actor_id=r.owner,
        )
        for r in rows
    ]


def _merges(engine, actor, customer, before, limit, language) -> list[TimelineEntry]:
    """Merges into the customer (its ``merge`` audit events); whoever reads the customer
    sees them."""
    audits = engine.classes["GxAudit"].select()
    audits = audits.filter(
        "lambda a: a.entity == n and a.record_id == c and a.action == 'merge'",
        {},
        {"n": ENTITY, "c": customer},
    )
    title = _words(language)["merged"]
    return [
        TimelineEntry(
            at=audit.at,
            kind="merge",
            id=audit.id,
            title=title,
            summary=(audit.changes or {}).get("summary"),
            entity=ENTITY,
            record_id=customer,
            actor_id=audit.actor_id,
            actor=None if audit.actor_id is not None else audit.actor,
        )
        for audit in newest_first(audits, engine, before, kind="merge", limit=limit)
    ]


# -- GraphQL ----------------------------------------------------------------------------------
@strawberry.type(
    name="TimelineEntry", description="One thing that happened around a customer (客户动态)."
)
class TimelineItem:
    at: datetime.datetime = strawberry.field(description="When, in UTC.")
    kind: str = strawberry.field(
        description="What: activity, workflow, contract, payment, task, merge, or a kind "
        "another plugin adds (ticket, campaign_response...)."
    )
    title: str
    summary: Optional[str]  # noqa: UP045 - strawberry reads the annotation
    entity: Optional[str] = strawberry.field(  # noqa: UP045
        description="The entity of the record the entry comes from."
    )
    record_id: Optional[strawberry.ID] = strawberry.field(  # noqa: UP045
        description="The id of that record."
    )
    actor: Optional[str] = strawberry.field(  # noqa: UP045
        description="Who did it, or whose record it is."
    )
    actor_id: Optional[strawberry.ID]  # noqa: UP045


@strawberry.type
class TimelineEdge:
    cursor: str
    node: TimelineItem


@strawberry.type(description="A page of a customer's timeline, newest first.")
class TimelineConnection:
    page_info: PageInfo
    edges: list[TimelineEdge]
    nodes: list[TimelineItem]


def _item(entry: TimelineEntry) -> TimelineItem:
    return TimelineItem(
        at=entry.at,
        kind=entry.kind,
        title=entry.title,
        summary=entry.summary,
        entity=entry.entity,
        record_id=None if entry.record_id is None else strawberry.ID(str(entry.record_id)),
        actor=entry.actor,
        actor_id=None if entry.actor_id is None else strawberry.ID(str(entry.actor_id)),
    )


async def resolve_timeline(
    root: Any, info: strawberry.Info, first: int | None = None, after: str | None = None
) -> TimelineConnection:
    """What happened around the customer, newest first: activities, stage changes of its
    opportunities, signed contracts, payments, tasks, merges and what other plugins add.
    Only entries the caller may read. ``first`` is capped like every list; ``after`` is
    the ``endCursor`` of the page before."""
    ctx = info.context
    actor = ctx.require_actor()
    engine = ctx.engine
    size = page_size(
        first if first is not None else engine.config.page_size_default,
        engine.config.page_size_max,
    )
    page = await in_thread(
        lambda: timeline(
            engine,
            ENTITY,
            root.id,
            actor=actor,
            first=size,
            after=after,
            language=ctx.language,
        )
    )
    items = [_item(e) for e in page.entries]
    return TimelineConnection(
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        edges=[TimelineEdge(cursor=c, node=i) for c, i in zip(page.cursors, items, strict=True)],
        nodes=items,
    )


def register_graphql(schema: Any) -> None:
    """``Customer.timeline(first, after)``."""
    schema.extend(ENTITY, "timeline", strawberry.field(resolver=resolve_timeline))
