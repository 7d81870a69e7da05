"""Reminders: rotten deals, overdue follow-ups, tasks and instalments, and the idle figures.

The periodic job ``sales.reminders`` (hourly) raises in-app notifications through the
engine's outbox (channel ``inbox``), one per *idle period* of a record and user:

- ``sales.rotten_deal``: an open opportunity (its stage has no outcome) whose stage declares
  ``rotten_after_days`` and that has been idle that long - idle since the latest of its last
  activity, the moment it entered its current stage (workflow history) and its creation;
  to the owner;
- ``sales.follow_up_overdue``: a customer whose ``next_follow_up_at`` has passed; to the
  owner (pool customers, without one, notify nobody);
- ``sales.task_overdue``: a task not done whose ``due`` has passed; to the owner;
- ``sales.instalment_overdue``: an instalment not fully paid whose due date is before today
  (installation time zone); to the contract's owner and every active ``finance`` user. A
  ``pending`` instalment is set to ``overdue`` through the record API.

Each message's key is ``sales.<kind>:<entity>:<id>:<start of the idle period>:<user>``; the
start is what a change of the record moves (last activity or stage entry, the follow-up
date, the task's due, the instalment's due date), so running the job again - in the same
hour on another worker, or a day later - sends nothing until the record changes and goes
idle again. Candidates are selected in SQL, by state and cut-off time; already sent keys
are looked up in batches, so an unchanged database costs the same few queries however many
records it holds.

GraphQL (``schema.extend``): ``Customer.idleDays``, ``Opportunity.idleDays``,
``Opportunity.rotten``, ``Task.overdue`` and ``PaymentPlan.overdue``, computed from the
record's own values, the workflow definition and - for opportunities - one batched query of
stage entries per request.
"""

import inspect
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import strawberry
from pony.orm import exists, select
from pony.orm import max as sql_max
from strawberry.dataloader import DataLoader

from guanxi.engine import SYSTEM, Money
from guanxi.graphql.context import in_thread

from .computed import instalment_status

#: The engine's built-in channel that writes to a user's in-app inbox.
INBOX = "inbox"
#: The periodic job's name and interval.
JOB = "sales.reminders"
INTERVAL_SECONDS = 3600
#: Who besides the contract's owner hears of an overdue instalment.
FINANCE_ROLE = "finance"
#: Ids (or keys) per ``IN (...)`` list.
CHUNK = 500
DAY = timedelta(days=1)
CENT = Decimal("0.01")

ROTTEN_DEAL = "rotten_deal"
FOLLOW_UP = "follow_up_overdue"
TASK = "task_overdue"
INSTALMENT = "instalment_overdue"
#: The notification templates, by kind (``Notification.template`` in the inbox).
TEMPLATES = {kind: f"sales.{kind}" for kind in (ROTTEN_DEAL, FOLLOW_UP, TASK, INSTALMENT)}


@dataclass(frozen=True)
class Reminder:
    """One record that is due a notification, and who should get it."""

    kind: str
    entity: str
    record_id: int
    #: The start of the idle period: what a change of the record moves.
    since: datetime | date
    users: tuple[int, ...]
    subject: str
    subject_zh: str
    details: dict[str, Any] = field(default_factory=dict)

    def key(self, user: int) -> str:
        since = self.since.isoformat()
        return f"sales.{self.kind}:{self.entity}:{self.record_id}:{since}:{user}"

    def payload(self, user: int) -> dict[str, Any]:
        return {
            "user": user,
            "template": TEMPLATES[self.kind],
            "kind": self.kind,
            "entity": self.entity,
            "record_id": self.record_id,
            "since": self.since.isoformat(),
            "subject": self.subject,
            "subjects": {"en": self.subject, "zh": self.subject_zh},
            **self.details,
        }


# -- the job --------------------------------------------------------------------------------
def register_periodic_jobs(register):
    """``sales.reminders``, hourly."""
    register(JOB, INTERVAL_SECONDS, run_reminders)


def run_reminders(engine: Any, now: datetime | None = None) -> Counter:
    """Queue the notifications due at ``now``; return how many were queued, by kind.

    Runs in the worker's transaction (joins it), or in its own when called directly.
    """
    now = now or engine.now()
    with engine.records.transaction(write=True):
        reminders = [
            *rotten_deals(engine, now),
            *overdue_follow_ups(engine, now),
            *overdue_tasks(engine, now),
            *overdue_instalments(engine, now),
        ]
        return _notify(engine, reminders)


def _notify(engine: Any, reminders: Sequence[Reminder]) -> Counter:
    messages = [(r, user) for r in reminders for user in r.users]
    sent = _sent_keys(engine, [r.key(user) for r, user in messages])
    queued: Counter = Counter()
    for reminder, user in messages:
        key = reminder.key(user)
        if key in sent:
            continue
        engine.runtime.enqueue(INBOX, key=key, payload=reminder.payload(user))
        queued[reminder.kind] += 1
    return queued


def _sent_keys(engine: Any, keys: list[str]) -> set[str]:
    """The keys already queued (outbox) or delivered (inbox), in batches."""
    found: set[str] = set()
    for name in ("GxOutbox", "GxNotification"):
        table = engine.classes[name]
        for chunk in _chunks(keys):
            found.update(select(m.key for m in table if m.key in chunk)[:])
    return found


def _chunks(items: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


def _local(engine: Any, moment: datetime) -> datetime:
    """A stored (naive UTC) datetime in the installation's time zone."""
    return moment.replace(tzinfo=UTC).astimezone(engine.config.tz)


def _local_today(engine: Any, now: datetime) -> date:
    return _local(engine, now).date()


def _when(engine: Any, moment: datetime) -> str:
    return _local(engine, moment).strftime("%Y-%m-%d %H:%M")


# -- rotten deals ---------------------------------------------------------------------------
def _pipeline(engine: Any) -> Any:
    """The workflow bound to Opportunity, or None (sales_pipeline switched off)."""
    runtime = engine.runtime
    return runtime.by_entity.get("Opportunity") if runtime is not None else None


def _rotting_states(wf: Any) -> dict[str, Any]:
    """The open states that declare ``rotten_after_days``."""
    return {
        name: state
        for name, state in wf.states.items()
        if state.rotten_after_days and state.outcome is None and not state.final
    }


def _stage_changes(engine: Any) -> Any:
    """Workflow events of opportunities that put them in a stage (creation, a move)."""
    events = engine.classes["GxWorkflowEvent"]
    return events.select().filter(
        "lambda e: e.entity == 'Opportunity'"
        " and (e.from_state is None or e.from_state != e.to_state)",
        {},
        {},
    )


def stage_entries(engine: Any, ids: Iterable[int]) -> dict[int, datetime]:
    """When each opportunity entered its current stage (one query per CHUNK ids)."""
    entered: dict[int, datetime] = {}
    for chunk in _chunks(sorted(set(ids))):
        changes = _stage_changes(engine).filter("lambda e: e.record_id in ids", {}, {"ids": chunk})
        entered.update(select((e.record_id, sql_max(e.at)) for e in changes)[:])
    return entered


def idle_since(created: datetime, *moments: datetime | None) -> datetime:
    """The start of the idle period: the latest of creation and the other moments."""
    return max([created, *(m for m in moments if m is not None)])


def rotten_deals(engine: Any, now: datetime) -> list[Reminder]:
    wf = _pipeline(engine)
    if wf is None:
        return []
    stage = wf.field
    globals_ = {**engine.classes, "exists": exists}
    found: list[tuple[Any, ...]] = []
    for name, state in _rotting_states(wf).items():
        cutoff = now - state.rotten_after_days * DAY
        deals = (
            engine.records.scoped_query("Opportunity")
            .filter(
                f"lambda o: o.{stage} == s and o.owner is not None and o.created_at <= c"
                " and (o.last_activity_at is None or o.last_activity_at <= c)",
                {},
                {"s": name, "c": cutoff},
            )
            .filter(
                "lambda o: not exists(e for e in GxWorkflowEvent if e.entity == 'Opportunity'"
                " and e.record_id == o.id and e.at > c"
                " and (e.from_state is None or e.from_state != e.to_state))",
                globals_,
                {"c": cutoff},
            )
        )
        rows = select((o.id, o.title, o.owner.id, o.created_at, o.last_activity_at) for o in deals)[
            :
        ]
        found.extend((name, *row) for row in rows)
    entered = stage_entries(engine, [row[1] for row in found])
    reminders = []
    for name, deal_id, title, owner, created, last_activity in found:
        state = wf.states[name]
        since = idle_since(created, last_activity, entered.get(deal_id))
        days = (now - since) // DAY
        label_zh = state.labels.get("zh") or state.label
        reminders.append(
            Reminder(
                ROTTEN_DEAL,
                "Opportunity",
                deal_id,
                since,
                (owner,),
                f"Deal “{title}” has had no activity for {days} days (stage {state.label})",
                f"商机“{title}”已{days}天没有跟进（阶段：{label_zh}）",
                {"title": title, "stage": name, "idle_days": days},
            )
        )
    return reminders


# -- follow-ups and tasks -------------------------------------------------------------------
def overdue_follow_ups(engine: Any, now: datetime) -> list[Reminder]:
    customers = engine.records.scoped_query("Customer").filter(
        "lambda c: c.owner is not None and c.next_follow_up_at is not None"
        " and c.next_follow_up_at < now",
        {},
        {"now": now},
    )
    rows = select((c.id, c.name, c.owner.id, c.next_follow_up_at) for c in customers)[:]
    return [
        Reminder(
            FOLLOW_UP,
            "Customer",
            customer_id,
            due,
            (owner,),
            f"Follow-up with {name} was due {_when(engine, due)}",
            f"客户“{name}”的跟进已于{_when(engine, due)}到期",
            {"name": name, "due": due.isoformat()},
        )
        for customer_id, name, owner, due in rows
    ]


def overdue_tasks(engine: Any, now: datetime) -> list[Reminder]:
    tasks = engine.records.scoped_query("Task").filter(
        "lambda t: t.owner is not None and (t.done is None or t.done == False)"
        " and t.due is not None and t.due < now",
        {},
        {"now": now},
    )
    rows = select((t.id, t.title, t.owner.id, t.due) for t in tasks)[:]
    return [
        Reminder(
            TASK,
            "Task",
            task_id,
            due,
            (owner,),
            f"Task “{title}” is overdue (due {_when(engine, due)})",
            f"任务“{title}”已逾期（截止{_when(engine, due)}）",
            {"title": title, "due": due.isoformat()},
        )
        for task_id, title, owner, due in rows
    ]


# -- instalments ----------------------------------------------------------------------------
def _unpaid(query: Any) -> Any:
    return query.filter(
        "lambda p: (p.status is None or p.status != 'paid')"
        " and (p.paid_amount is None or p.paid_amount < p.amount)",
        {},
        {},
    )


def finance_users(engine: Any) -> tuple[int, ...]:
    """Active users with the finance role (users are few: their roles are read here)."""
    users = engine.records.scoped_query("User").filter("lambda u: u.active == True", {}, {})
    rows = select((u.id, u.roles) for u in users)[:]
    return tuple(sorted(uid for uid, roles in rows if FINANCE_ROLE in (roles or ())))


def overdue_instalments(engine: Any, now: datetime) -> list[Reminder]:
    today = _local_today(engine, now)
    instalments = _unpaid(engine.records.scoped_query("PaymentPlan")).filter(
        "lambda p: p.due_date < today and p.contract.deleted_at is None", {}, {"today": today}
    )
    rows = select(
        (
            p.id,
            p.due_date,
            p.amount,
            p.amount_currency,
            p.paid_amount,
            p.status,
            p.contract.id,
            p.contract.number,
            p.contract.owner.id,
        )
        for p in instalments
    )[:]
    if not rows:
        return []
    finance = finance_users(engine)
    reminders = []
    for plan_id, due, amount, currency, paid, status, contract, number, owner in rows:
        if status == "pending":
            engine.records.update("PaymentPlan", plan_id, {"status": "overdue"}, actor=SYSTEM)
        outstanding = Money((amount - (paid or Decimal(0))).quantize(CENT), currency)
        users = tuple(dict.fromkeys(u for u in (owner, *finance) if u is not None))
        label = number or f"#{contract}"
        owed = f"{outstanding.amount:,} {outstanding.currency or ''}".strip()
        reminders.append(
            Reminder(
                INSTALMENT,
                "PaymentPlan",
                plan_id,
                due,
                users,
                f"Instalment of contract {label} due {due.isoformat()} is overdue: "
                f"{owed} outstanding",
                f"合同{label}的回款计划（{due.isoformat()}到期）已逾期，未回款{owed}",
                {
                    "contract": contract,
                    "contract_number": number,
                    "due_date": due.isoformat(),
                    "outstanding": str(outstanding.amount),
                    "currency": outstanding.currency,
                },
            )
        )
    return reminders


# -- GraphQL --------------------------------------------------------------------------------
def whole_days(since: datetime, now: datetime) -> int:
    """Whole days (24 h) from ``since`` to ``now``; 0 when ``since`` is in the future."""
    return max(0, (now - since) // DAY)


def register_graphql(schema):
    """Customer.idleDays, Opportunity.idleDays and .rotten, Task.overdue, PaymentPlan.overdue."""

    def customer_idle_days(root: strawberry.Parent[Any], info: strawberry.Info) -> int:
        """Whole days (24 h) since the customer's last activity, or since it was created
        when it has none."""
        since = idle_since(root.created_at, root.last_activity_at)
        return whole_days(since, info.context.engine.now())

    async def opportunity_idle_since(root: Any, info: strawberry.Info) -> datetime:
        ctx = info.context
        loader = ctx.loader(
            ("sales.stage_entered",),
            lambda: DataLoader(lambda ids: _load_stage_entries(ctx.engine, ids)),
        )
        return idle_since(root.created_at, root.last_activity_at, await loader.load(root.id))

    async def opportunity_idle_days(root: strawberry.Parent[Any], info: strawberry.Info) -> int:
        """Whole days (24 h) since the latest of the opportunity's last activity, its entry
        into its current stage and its creation."""
        since = await opportunity_idle_since(root, info)
        return whole_days(since, info.context.engine.now())

    async def opportunity_rotten(root: strawberry.Parent[Any], info: strawberry.Info) -> bool:
        """True when the opportunity is open and has been idle (see idleDays) at least its
        stage's rotten_after_days."""
        engine = info.context.engine
        wf = _pipeline(engine)
        state = _rotting_states(wf).get(root[wf.field]) if wf is not None else None
        if state is None:
            return False
        since = await opportunity_idle_since(root, info)
        return engine.now() - since >= state.rotten_after_days * DAY

    def task_overdue(root: strawberry.Parent[Any], info: strawberry.Info) -> bool:
        """True when the task is not done and its due time has passed."""
        return not root.done and root.due is not None and root.due < info.context.engine.now()

    def payment_plan_overdue(root: strawberry.Parent[Any], info: strawberry.Info) -> bool:
        """True when the instalment is not fully paid and its due date is before today
        (installation time zone)."""
        engine = info.context.engine
        return is_overdue_instalment(root, _local_today(engine, engine.now()))

    fields = {
        ("Customer", "idle_days"): customer_idle_days,
        ("Opportunity", "idle_days"): opportunity_idle_days,
        ("Opportunity", "rotten"): opportunity_rotten,
        ("Task", "overdue"): task_overdue,
        ("PaymentPlan", "overdue"): payment_plan_overdue,
    }
    for (entity, name), resolver in fields.items():
        description = inspect.getdoc(resolver)
        schema.extend(entity, name, strawberry.field(resolver=resolver, description=description))


def is_overdue_instalment(plan: Any, today: date) -> bool:
    """The job's rule on one instalment record: not fully paid and due before ``today``."""
    status = instalment_status(plan.amount, plan.paid_amount, plan.due_date, today)
    return status == "overdue"


async def _load_stage_entries(engine: Any, ids: Sequence[int]) -> list[datetime | None]:
    entered = await in_thread(lambda: stage_entries(engine, ids))
    return [entered.get(i) for i in ids]
