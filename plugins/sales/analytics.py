"""Sales figures: ``analytics { sales { funnel forecast performance receivables dashboard } }``.

Every figure is computed by the database: each is a handful of ``SELECT ... GROUP BY``
queries (Pony ``select`` with ``count``/``sum``) over ``engine.records.scoped_query(entity,
actor)``, so a figure counts only the records the caller may read and costs the same
number of queries however many records there are. No ORM object is loaded; Python only
merges the few grouped rows. Money is summed per currency: an amount is a list of
``Money``, one per currency that occurs. The definitions of every figure are in
``docs/sales-analytics.md``.

The pipeline is read from the workflow bound to ``Opportunity`` (``engine.runtime.
workflow_for``), so an admin's replacement workflow brings its own stages: won and lost
deals are told by the ``outcome`` of their state, never by a state's name. History comes
from the workflow events (``GxWorkflowEvent``: creation in the initial state and every
fired transition). Dates are the installation's (``engine.config.tz``): a day, a month or
a quarter starts at local midnight, which the queries compare with the stored naive UTC
times.

The module-level functions (``funnel``, ``forecast``, ...) take the engine and the actor
and return the GraphQL objects; the resolvers of :class:`SalesAnalytics` run them in a
worker thread. ``bench/analytics.py`` calls them directly.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Optional

import strawberry
from pony.orm import count, exists, raw_sql, select
from pony.orm import sum as total

from guanxi.engine import Actor, Engine, FieldProblem, ValidationError
from guanxi.graphql.context import in_thread
from guanxi.graphql.types import Money

from .pipeline import local_today

CENT = Decimal("0.01")
#: How far ahead a forecast may look, in months.
FORECAST_MONTHS = (1, 36)
DEFAULT_FORECAST_MONTHS = 6
#: The most periods one performance question may cover (ten years of months).
MAX_PERIODS = 120
#: Receivable ages, oldest first: (field, N) - the instalments due before today - N days
#: not in an older age; the last, not yet due, holds the rest.
AGES: tuple[tuple[str, int | None], ...] = (
    ("overdue_over_90", 90),
    ("overdue_61_to_90", 60),
    ("overdue_31_to_60", 30),
    ("overdue_0_to_30", -1),  # due today is 0 days overdue
    ("not_due", None),
)
#: Roles whose to-do list holds every pending instalment they may read, not only their own.
RECEIVABLE_ROLES = frozenset({"finance"})

Label = Callable[[Any], str]


# -- GraphQL types ---------------------------------------------------------------------------
@strawberry.enum(description="The length of a performance period.")
class SalesPeriod(enum.Enum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@strawberry.enum(description="What performance figures are grouped by.")
class SalesGroupBy(enum.Enum):
    OWNER = "owner"
    REGION = "region"


@strawberry.type(description="One stage of the sales funnel.")
class SalesFunnelStage:
    stage: str = strawberry.field(description="The state's name in the workflow.")
    label: str = strawberry.field(description="The state's label in the caller's language.")
    outcome: Optional[str] = strawberry.field(  # noqa: UP045 - strawberry reads it
        description="won or lost for a closed stage; null for an open one."
    )
    deals: int = strawberry.field(description="Deals whose history entered this stage.")
    amount: list[Money] = strawberry.field(
        description="The amounts of those deals, summed per currency."
    )
    next_stage: Optional[str] = strawberry.field(  # noqa: UP045
        description="The stage the conversion is measured to: the next open or won stage."
    )
    conversion: Optional[float] = strawberry.field(  # noqa: UP045
        description="Share (0-1) of this stage's deals that also entered the next stage."
    )
    average_days: Optional[float] = strawberry.field(  # noqa: UP045
        description="Mean days from entering this stage to leaving it, over the stays "
        "that ended; null when none has."
    )
    stays: int = strawberry.field(description="The finished stays the average is taken over.")


@strawberry.type(description="The sales funnel: stages, and where the deals stand now.")
class SalesFunnel:
    stages: list[SalesFunnelStage]
    open: int = strawberry.field(description="Deals now in a stage without an outcome.")
    won: int = strawberry.field(description="Deals now in a stage whose outcome is won.")
    lost: int = strawberry.field(description="Deals now in a stage whose outcome is lost.")
    won_amount: list[Money]
    lost_amount: list[Money]


@strawberry.type(description="Open deals expected to close in one month (or overdue).")
class SalesForecastMonth:
    month: Optional[str] = strawberry.field(  # noqa: UP045
        description="YYYY-MM; null on the overdue row."
    )
    overdue: bool = strawberry.field(
        description="The row of open deals whose expected close date has passed."
    )
    deals: int
    amount: list[Money] = strawberry.field(description="Open amount, per currency.")
    weighted: list[Money] = strawberry.field(
        description="Open amount times each deal's probability, per currency."
    )


@strawberry.type(description="One group's figures in one period.")
class SalesPerformanceRow:
    period: str = strawberry.field(description="2027-03, 2027-Q1 or 2027.")
    start: date = strawberry.field(description="The period's first day.")
    end: date = strawberry.field(description="The period's last day.")
    owner_id: Optional[strawberry.ID]  # noqa: UP045
    owner: Optional[str] = strawberry.field(  # noqa: UP045
        description="The owner's username (grouped by owner); null for unowned records."
    )
    region: Optional[str] = strawberry.field(  # noqa: UP045
        description="The customer's region (grouped by region); null when it has none."
    )
    won_deals: int = strawberry.field(description="Deals that entered a won stage.")
    won_amount: list[Money]
    activities: int
    new_customers: int


@strawberry.type(description="Outstanding instalment amounts in one currency, by age.")
class SalesAgedAmounts:
    currency: str
    not_due: Decimal = strawberry.field(description="Due after today.")
    overdue_0_to_30: Decimal = strawberry.field(description="Due today up to 30 days ago.")
    overdue_31_to_60: Decimal
    overdue_61_to_90: Decimal
    overdue_over_90: Decimal = strawberry.field(description="Due more than 90 days ago.")
    total: Decimal


@strawberry.type(description="What one customer owes in one currency, by age.")
class SalesCustomerReceivable(SalesAgedAmounts):
    customer_id: strawberry.ID
    customer_name: Optional[str] = strawberry.field(  # noqa: UP045
        description="Null when the customer record is not visible to the caller."
    )


@strawberry.type(description="Outstanding instalments per customer, aged by due date.")
class SalesReceivables:
    customers: list[SalesCustomerReceivable]
    totals: list[SalesAgedAmounts] = strawberry.field(description="One row per currency.")


@strawberry.type(description="The caller's own to-dos (工作台待办).")
class SalesTodos:
    overdue_follow_ups: int = strawberry.field(
        description="Own customers whose next follow-up time has passed."
    )
    rotten_deals: int = strawberry.field(
        description="Own open deals idle longer than their stage's rotten_after_days."
    )
    tasks_due: int = strawberry.field(description="Own open tasks due by the end of today.")
    pending_instalments: int = strawberry.field(
        description="Unpaid instalments due by today, of own contracts (finance: all)."
    )
    pending_amount: list[Money]


@strawberry.type(description="The workbench (工作台): what happened in a window, and to-dos.")
class SalesDashboard:
    from_: date = strawberry.field(name="from")
    to: date
    new_customers: int
    new_opportunities: int
    activities: int
    contracts_signed: int
    contract_amount: list[Money]
    payments: int = strawberry.field(description="Confirmed payments paid in the window.")
    payments_received: list[Money]
    todos: SalesTodos


# -- helpers ---------------------------------------------------------------------------------
def _cents(value: Any) -> Decimal:
    """A sum as exact cents (SQLite adds money as floating point)."""
    return Decimal(str(value or 0)).quantize(CENT, ROUND_HALF_UP)


def _money(sums: dict[str, Decimal]) -> list[Money]:
    return [Money(amount=_cents(a), currency=c) for c, a in sorted(sums.items())]


def _add(sums: dict[str, Decimal], currency: str | None, amount: Any) -> None:
    if currency is not None and amount is not None:
        sums[currency] = sums.get(currency, Decimal(0)) + Decimal(str(amount))


def _midnight(engine: Engine, day: date) -> datetime:
    """Local midnight at the start of ``day`` as the stored naive UTC time."""
    local = datetime.combine(day, time(), tzinfo=engine.config.tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def _window(engine: Engine, start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in stored time: both days included."""
    return _midnight(engine, start), _midnight(engine, end + timedelta(days=1))


def _day_number(engine: Engine, column: str) -> str:
    """SQL for a timestamp column as a number of days (fractional), for differences."""
    if engine.db.provider_name == "sqlite":
        return f"julianday({column})"
    return f"(EXTRACT(EPOCH FROM {column}) / 86400.0)"


def _bucket(column: str, bounds: str, buckets: int) -> str:
    """SQL numbering the bucket of ``column`` (0..buckets-1) by the ascending boundaries
    ``$(<bounds>[1])``... of a local list ``bounds`` of the query's frame."""
    if buckets == 1:  # a CASE still: GROUP BY 0 would name a column by position
        return f"CASE WHEN {column} IS NULL THEN 0 ELSE 0 END"
    whens = " ".join(f"WHEN {column} < $({bounds}[{i + 1}]) THEN {i}" for i in range(buckets - 1))
    return f"CASE {whens} ELSE {buckets - 1} END"


def _readable(engine: Engine, actor: Actor, entity: str, field: str) -> bool:
    return engine.policy.readable_field(engine.registry[entity], actor, field)


def _invalid(figure: str, field: str, message: str) -> ValidationError:
    return ValidationError(FieldProblem(figure, field, message))


#: The last day a window may end on: the period holding it must end within the calendar.
LAST_DAY = date(9999, 11, 30)


def _check_window(figure: str, start: date | None, end: date | None) -> None:
    for name, day in (("from", start), ("to", end)):
        if day is not None and day > LAST_DAY:
            raise _invalid(figure, name, f"must be {LAST_DAY.isoformat()} or earlier")
    if start is not None and end is not None and start > end:
        raise _invalid(figure, "from", f"{start.isoformat()} is after to ({end.isoformat()})")


def _customers(engine: Engine, actor: Actor) -> Any:
    """The customers the caller's figures count: those they may read, the shared pool (no
    owner) only when they read every customer. A customer manager reads the pool to claim
    from it (pool.py); their figures stay their own."""
    query = engine.records.scoped_query("Customer", actor)
    scopes = getattr(engine.policy, "scopes", None)
    if (
        actor.is_admin
        or scopes is None
        or "all" in scopes(engine.registry["Customer"], actor, "read")
    ):
        return query
    return query.filter(lambda c: c.owner is not None)


def _pipeline(engine: Engine) -> Any:
    return engine.runtime.workflow_for("Opportunity")


def _states_by_outcome(wf: Any, outcome: str | None) -> list[str]:
    return [name for name, state in wf.states.items() if state.outcome == outcome]


# -- funnel ----------------------------------------------------------------------------------
def funnel(
    engine: Engine,
    actor: Actor,
    *,
    start: date | None = None,
    end: date | None = None,
    owner_id: int | None = None,
    region: str | None = None,
    label: Label = lambda state: state.label,
) -> SalesFunnel:
    """The funnel of the opportunities created from ``start`` to ``end`` (local days, both
    included; open-ended when None), of one owner and one customer region when given."""
    _check_window("funnel", start, end)
    wf = _pipeline(engine)
    entity, field = wf.entity, wf.field
    order = [*_states_by_outcome(wf, None), *_states_by_outcome(wf, "won")]
    path = list(order)  # the main path: conversion is measured along it
    order += _states_by_outcome(wf, "lost")
    following = dict(zip(path, path[1:], strict=False))
    amounts = _readable(engine, actor, entity, "amount")
    events = engine.classes["GxWorkflowEvent"]
    with engine.records.transaction():
        deals = engine.records.scoped_query(entity, actor)
        if start is not None:
            lo = _midnight(engine, start)
            deals = deals.filter(lambda o: o.created_at >= lo)
        if end is not None:
            hi = _midnight(engine, end + timedelta(days=1))
            deals = deals.filter(lambda o: o.created_at < hi)
        if owner_id is not None:
            deals = deals.filter(lambda o: o.owner.id == owner_id)
        if region is not None:
            deals = deals.filter(lambda o: o.customer.region == region)
        stages = [
            _funnel_stage(engine, wf, deals, events, state, following.get(state), amounts, label)
            for state in order
        ]
        _stage_durations(engine, wf, deals, events, {s.stage: s for s in stages})
        current = select(
            (getattr(o, field), o.amount_currency, count(o), total(o.amount)) for o in deals
        )
        standing: dict[str | None, int] = defaultdict(int)
        closed: dict[str, dict[str, Decimal]] = {"won": {}, "lost": {}}
        for state, currency, n, amount in current[:]:
            outcome = wf.states[state].outcome if state in wf.states else None
            standing[outcome] += n
            if outcome in closed and amounts:
                _add(closed[outcome], currency, amount)
    return SalesFunnel(
        stages=stages,
        open=standing[None],
        won=standing["won"],
        lost=standing["lost"],
        won_amount=_money(closed["won"]),
        lost_amount=_money(closed["lost"]),
    )


def _funnel_stage(
    engine: Engine,
    wf: Any,
    deals: Any,
    events: Any,
    state: str,
    after: str | None,
    amounts: bool,
    label: Label,
) -> SalesFunnelStage:
    """The deals that entered ``state``, per currency (one query), and how many of them
    also entered ``after`` (a second)."""
    entity = wf.entity
    rows = select(
        (o.amount_currency, count(o), total(o.amount))
        for o in deals
        if exists(
            e for e in events if e.entity == entity and e.record_id == o.id and e.to_state == state
        )
    )[:]
    reached = sum(n for _, n, _ in rows)
    went_on = 0
    if after is not None and reached:
        went_on = select(
            o
            for o in deals
            if exists(
                e
                for e in events
                if e.entity == entity and e.record_id == o.id and e.to_state == state
            )
            and exists(
                e
                for e in events
                if e.entity == entity and e.record_id == o.id and e.to_state == after
            )
        ).count()
    sums: dict[str, Decimal] = {}
    if amounts:
        for currency, _, amount in rows:
            _add(sums, currency, amount)
    return SalesFunnelStage(
        stage=state,
        label=label(wf.states[state]),
        outcome=wf.states[state].outcome,
        deals=reached,
        amount=_money(sums),
        next_stage=after,
        conversion=round(went_on / reached, 4) if after is not None and reached else None,
        average_days=None,
        stays=0,
    )


def _stage_durations(
    engine: Engine, wf: Any, deals: Any, events: Any, stages: dict[str, SalesFunnelStage]
) -> None:
    """Fill ``average_days`` and ``stays`` from two grouped queries over the history.

    A stay in a stage starts with an event entering it from elsewhere (or the creation in
    the initial state) and ends with the next event leaving it for another stage. For the
    finished stays, the total time is (sum of leaving times) - (sum of entering times), so
    two sums per stage give the mean without pairing events row by row.
    """
    entity = wf.entity
    enter_day = _day_number(engine, '"e"."at"')
    leave_day = _day_number(engine, '"x"."at"')
    entered = select(
        (e.to_state, count(e), total(raw_sql(enter_day, result_type=float)))
        for e in events
        for o in deals
        if e.entity == entity
        and e.record_id == o.id
        and (e.from_state is None or e.from_state != e.to_state)
        and exists(
            x
            for x in events
            if x.entity == entity
            and x.record_id == e.record_id
            and x.from_state == e.to_state
            and x.to_state != x.from_state
            and x.id > e.id
        )
    )[:]
    left = select(
        (x.from_state, count(x), total(raw_sql(leave_day, result_type=float)))
        for x in events
        for o in deals
        if x.entity == entity
        and x.record_id == o.id
        and x.from_state is not None
        and x.from_state != x.to_state
        and exists(
            e
            for e in events
            if e.entity == entity
            and e.record_id == x.record_id
            and e.to_state == x.from_state
            and (e.from_state is None or e.from_state != e.to_state)
            and e.id < x.id
        )
    )[:]
    leaving = {state: (n, days) for state, n, days in left}
    for state, n, days in entered:
        stage = stages.get(state)
        out = leaving.get(state)
        if stage is None or out is None or out[0] != n or not n:
            continue  # a history that does not alternate (an old state renamed) is skipped
        stage.stays = n
        stage.average_days = round((out[1] - days) / n, 2)


# -- forecast --------------------------------------------------------------------------------
def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_start(day: date, months_later: int = 0) -> date:
    index = _month_index(day) + months_later
    return date(index // 12, index % 12 + 1, 1)


def forecast(
    engine: Engine, actor: Actor, *, months: int = DEFAULT_FORECAST_MONTHS
) -> list[SalesForecastMonth]:
    """Open deals with an amount and an expected close date, by the month they are
    expected to close: an overdue row (expected before today), then this month (from
    today) and the next ``months - 1`` months. Amounts are weighted by each deal's
    ``probability``."""
    low, high = FORECAST_MONTHS
    if not low <= months <= high:
        raise _invalid("forecast", "months", f"must be between {low} and {high}, not {months}")
    wf = _pipeline(engine)
    entity, field = wf.entity, wf.field
    open_states = _states_by_outcome(wf, None)
    today = local_today(engine)
    horizon = _month_start(today, months)
    amounts = _readable(engine, actor, entity, "amount")
    with engine.records.transaction():
        deals = engine.records.scoped_query(entity, actor).filter(
            lambda o: (
                getattr(o, field) in open_states
                and o.expected_close_date is not None
                and o.amount is not None
                and o.expected_close_date < horizon
            )
        )
        overdue = select(
            (o.amount_currency, count(o), total(o.amount), total(o.amount * o.probability))
            for o in deals
            if o.expected_close_date < today
        )[:]
        upcoming = select(
            (
                o.expected_close_date.year,
                o.expected_close_date.month,
                o.amount_currency,
                count(o),
                total(o.amount),
                total(o.amount * o.probability),
            )
            for o in deals
            if o.expected_close_date >= today
        )[:]
    rows = [SalesForecastMonth(month=None, overdue=True, deals=0, amount=[], weighted=[])]
    by_month: dict[tuple[int, int], SalesForecastMonth] = {}
    for i in range(months):
        first = _month_start(today, i)
        row = SalesForecastMonth(
            month=f"{first.year:04d}-{first.month:02d}",
            overdue=False,
            deals=0,
            amount=[],
            weighted=[],
        )
        rows.append(row)
        by_month[(first.year, first.month)] = row
    found = [(rows[0], r) for r in overdue]
    found += [(by_month[(y, m)], (c, n, a, w)) for y, m, c, n, a, w in upcoming]
    sums: dict[int, tuple[dict[str, Decimal], dict[str, Decimal]]] = defaultdict(lambda: ({}, {}))
    for row, (currency, n, amount, weighted) in found:
        row.deals += n
        if amounts:
            plain, weights = sums[id(row)]
            _add(plain, currency, amount)
            _add(weights, currency, weighted)
    for row in rows:
        plain, weights = sums.get(id(row), ({}, {}))
        row.amount, row.weighted = _money(plain), _money(weights)
    return rows


# -- performance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Period:
    name: str
    start: date
    end: date  # the last day


_MONTHS_IN = {SalesPeriod.MONTH: 1, SalesPeriod.QUARTER: 3, SalesPeriod.YEAR: 12}


def periods(kind: SalesPeriod, start: date, end: date) -> list[_Period]:
    """The whole periods of ``kind`` that hold the days ``start`` to ``end``."""
    step = _MONTHS_IN[kind]
    first = date(start.year, (start.month - 1) // step * step + 1, 1)
    found = []
    while first <= end:
        following = _month_start(first, step)
        if kind is SalesPeriod.MONTH:
            name = f"{first.year:04d}-{first.month:02d}"
        elif kind is SalesPeriod.QUARTER:
            name = f"{first.year:04d}-Q{(first.month - 1) // 3 + 1}"
        else:
            name = f"{first.year:04d}"
        found.append(_Period(name, first, following - timedelta(days=1)))
        first = following
    return found


#: Performance queries: text, so one query serves either grouping. Raw SQL names a table
#: by its query variable, so the records a period is taken from are iterated from their
#: entity (e, a, c) and joined to the caller's scoped query.
_WON = """(
    (raw_sql(won_at, result_type=int), {deal}, o.amount_currency, count(o), total(o.amount))
    for e in events
    for o in deals
    if e.entity == entity
    and e.record_id == o.id
    and e.to_state in won_states
    and e.at >= lo
    and e.at < hi
    and not exists(
        w for w in events
        if w.entity == entity
        and w.record_id == e.record_id
        and w.to_state in won_states
        and w.id < e.id
    )
)"""
_DONE = """(
    (raw_sql(done_at, result_type=int), {activity}, count(a))
    for a in activity
    for s in activities
    if a.id == s.id and a.at >= lo and a.at < hi
)"""
_MADE = """(
    (raw_sql(made_at, result_type=int), {customer}, count(c))
    for c in customer
    for s in customers
    if c.id == s.id and c.created_at >= lo and c.created_at < hi
)"""
_GROUPS = {
    SalesGroupBy.OWNER: {"deal": "o.owner.id", "activity": "a.owner.id", "customer": "c.owner.id"},
    SalesGroupBy.REGION: {
        "deal": "o.customer.region",
        "activity": "a.customer.region",
        "customer": "c.region",
    },
}
_QUERY_FUNCTIONS = {"raw_sql": raw_sql, "count": count, "total": total, "exists": exists}


def performance(
    engine: Engine,
    actor: Actor,
    *,
    period: SalesPeriod = SalesPeriod.MONTH,
    group_by: SalesGroupBy = SalesGroupBy.OWNER,
    start: date | None = None,
    end: date | None = None,
) -> list[SalesPerformanceRow]:
    """Won deals, activities and new customers per period and owner (or region).

    A deal is won in the period of the first event that took it into a won stage; an
    activity counts by its ``at``, a customer by its creation. The periods are the whole
    months, quarters or years holding ``start`` (default: 1 January of this year) to
    ``end`` (default: today), in the installation's time zone.
    """
    today = local_today(engine)
    end = end or today
    start = start or date(today.year, 1, 1)
    _check_window("performance", start, end)
    step = _MONTHS_IN[period]
    n_periods = _month_index(end) // step - _month_index(start) // step + 1
    if n_periods > MAX_PERIODS:
        raise _invalid(
            "performance",
            "from",
            f"covers {n_periods} periods; ask for at most {MAX_PERIODS} at a time",
        )
    spans = periods(period, start, end)
    wf = _pipeline(engine)
    entity = wf.entity
    won_states = _states_by_outcome(wf, "won")
    amounts = _readable(engine, actor, entity, "amount")
    bounds = [_midnight(engine, p.start) for p in spans]
    bounds.append(_midnight(engine, spans[-1].end + timedelta(days=1)))
    lo, hi = bounds[0], bounds[-1]
    n = len(spans)
    by_owner = group_by is SalesGroupBy.OWNER
    records = engine.records
    with records.transaction():
        grouping = _GROUPS[group_by]
        query_names = {
            "events": engine.classes["GxWorkflowEvent"],
            "deals": records.scoped_query(entity, actor),
            "activity": engine.classes["Activity"],
            "activities": records.scoped_query("Activity", actor),
            "customer": engine.classes["Customer"],
            "customers": _customers(engine, actor),
            "entity": entity,
            "won_states": won_states,
            "lo": lo,
            "hi": hi,
            "bounds": bounds,
            "won_at": _bucket('"e"."at"', "bounds", n),
            "done_at": _bucket('"a"."at"', "bounds", n),
            "made_at": _bucket('"c"."created_at"', "bounds", n),
        }
        won_rows, done_rows, made_rows = (
            select(text.format(**grouping), _QUERY_FUNCTIONS, query_names)[:]
            for text in (_WON, _DONE, _MADE)
        )
        owners = {g for rows in (won_rows, done_rows, made_rows) for _, g, *_ in rows}
        names: dict[int, str] = {}
        if by_owner and owners - {None}:
            wanted = sorted(owners - {None})
            users = records.scoped_query("User", actor)
            names = dict(select((u.id, u.username) for u in users if u.id in wanted)[:])

    rows: dict[tuple[int, Any], SalesPerformanceRow] = {}
    won_sums: dict[tuple[int, Any], dict[str, Decimal]] = defaultdict(dict)

    def row(bucket: int, group: Any) -> SalesPerformanceRow:
        key = (bucket, group)
        if key not in rows:
            span = spans[bucket]
            rows[key] = SalesPerformanceRow(
                period=span.name,
                start=span.start,
                end=span.end,
                owner_id=strawberry.ID(str(group)) if by_owner and group is not None else None,
                owner=names.get(group) if by_owner else None,
                region=None if by_owner else group,
                won_deals=0,
                won_amount=[],
                activities=0,
                new_customers=0,
            )
        return rows[key]

    for bucket, group, currency, deals_won, amount in won_rows:
        row(bucket, group).won_deals += deals_won
        if amounts:
            _add(won_sums[(bucket, group)], currency, amount)
    for bucket, group, done in done_rows:
        row(bucket, group).activities += done
    for bucket, group, made in made_rows:
        row(bucket, group).new_customers += made
    for key, sums in won_sums.items():
        rows[key].won_amount = _money(sums)
    blank = 0 if by_owner else ""
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] is None, k[1] or blank))]


# -- receivables -----------------------------------------------------------------------------
def _unpaid(query: Any) -> Any:
    """Instalments with something outstanding: amount - paid_amount > 0."""
    return query.filter(lambda p: p.paid_amount is None or p.paid_amount < p.amount)


def receivables(engine: Engine, actor: Actor) -> SalesReceivables:
    """What each customer still owes on its contracts' instalments, per currency, aged by
    the days since each instalment's due date (today in the installation's zone)."""
    today = local_today(engine)
    columns = [column for column, _ in AGES]
    bounds = [None, *(today - timedelta(days=n) for _, n in AGES if n is not None)]  # noqa: F841
    amounts = _readable(engine, actor, "PaymentPlan", "amount")
    records = engine.records
    with records.transaction():
        plans = _unpaid(records.scoped_query("PaymentPlan", actor))
        plan = engine.classes["PaymentPlan"]
        aged = _bucket('"p"."due_date"', "bounds", len(columns))
        # iterated from the entity, joined to the scoped query: raw SQL names "p"
        rows = select(
            (
                raw_sql(aged, result_type=int),
                p.contract.customer.id,
                p.amount_currency,
                total(p.amount),
                total(p.paid_amount),
            )
            for p in plan
            for s in plans
            if p.id == s.id
        )[:]
        customers = records.scoped_query("Customer", actor)
        names = dict(
            select(
                (c.id, c.name) for c in customers for p in plans if p.contract.customer.id == c.id
            )[:]
        )
    per_customer: dict[tuple[int, str], dict[str, Decimal]] = defaultdict(dict)
    for bucket, customer, currency, amount, paid in rows:
        if amounts and currency is not None:
            aged_sums = per_customer[(customer, currency)]
            column = columns[bucket]
            owed = Decimal(str(amount or 0)) - Decimal(str(paid or 0))
            aged_sums[column] = aged_sums.get(column, Decimal(0)) + owed
    customer_rows = []
    totals: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for (customer, currency), sums in per_customer.items():
        for column, amount in sums.items():
            totals[currency][column] = totals[currency].get(column, Decimal(0)) + amount
        customer_rows.append(
            SalesCustomerReceivable(
                customer_id=strawberry.ID(str(customer)),
                customer_name=names.get(customer),
                **_aged(currency, sums, columns),
            )
        )
    customer_rows.sort(key=lambda r: (-r.total, r.customer_name or "", int(r.customer_id)))
    return SalesReceivables(
        customers=customer_rows,
        totals=[SalesAgedAmounts(**_aged(c, s, columns)) for c, s in sorted(totals.items())],
    )


def _aged(currency: str, sums: dict[str, Decimal], columns: Iterable[str]) -> dict[str, Any]:
    values = {column: _cents(sums.get(column)) for column in columns}
    return {"currency": currency, **values, "total": sum(values.values(), Decimal("0.00"))}


# -- dashboard -------------------------------------------------------------------------------
def dashboard(
    engine: Engine, actor: Actor, *, start: date | None = None, end: date | None = None
) -> SalesDashboard:
    """Counts of what happened from ``start`` (default: the 1st of this month) to ``end``
    (default: today), local days both included, and the caller's own to-dos now."""
    today = local_today(engine)
    end = end or today
    start = start or today.replace(day=1)
    _check_window("dashboard", start, end)
    lo, hi = _window(engine, start, end)
    now = engine.now()
    records = engine.records
    contract_amounts = _readable(engine, actor, "Contract", "amount")
    payment_amounts = _readable(engine, actor, "Payment", "amount")
    with records.transaction():
        new_customers = (
            _customers(engine, actor)
            .filter(lambda c: c.created_at >= lo and c.created_at < hi)
            .count()
        )
        new_opportunities = (
            records.scoped_query("Opportunity", actor)
            .filter(lambda o: o.created_at >= lo and o.created_at < hi)
            .count()
        )
        activities = (
            records.scoped_query("Activity", actor)
            .filter(lambda a: a.at >= lo and a.at < hi)
            .count()
        )
        contracts = records.scoped_query("Contract", actor)
        signed = select(
            (c.amount_currency, count(c), total(c.amount))
            for c in contracts
            if c.signed_on >= start and c.signed_on <= end
        )[:]
        payments = records.scoped_query("Payment", actor)
        paid = select(
            (p.amount_currency, count(p), total(p.amount))
            for p in payments
            if p.confirmed and p.paid_on >= start and p.paid_on <= end
        )[:]
        todos = _todos(engine, actor, today, now)
    contract_sums: dict[str, Decimal] = {}
    payment_sums: dict[str, Decimal] = {}
    for currency, _, amount in signed if contract_amounts else ():
        _add(contract_sums, currency, amount)
    for currency, _, amount in paid if payment_amounts else ():
        _add(payment_sums, currency, amount)
    return SalesDashboard(
        from_=start,
        to=end,
        new_customers=new_customers,
        new_opportunities=new_opportunities,
        activities=activities,
        contracts_signed=sum(n for _, n, _ in signed),
        contract_amount=_money(contract_sums),
        payments=sum(n for _, n, _ in paid),
        payments_received=_money(payment_sums),
        todos=todos,
    )


def _todos(engine: Engine, actor: Actor, today: date, now: datetime) -> SalesTodos:
    """The caller's own follow-ups, rotten deals, tasks and instalments (inside a session)."""
    me = actor.id
    records = engine.records
    wf = _pipeline(engine)
    follow_ups = (
        records.scoped_query("Customer", actor)
        .filter(
            lambda c: (
                c.owner.id == me and c.next_follow_up_at is not None and c.next_follow_up_at < now
            )
        )
        .count()
    )
    rotten = 0
    rules = [
        (name, state.rotten_after_days)
        for name, state in wf.states.items()
        if state.outcome is None and state.rotten_after_days
    ]
    if rules:
        # One query: in stage i and idle past cutoff i - created, last active and moved
        # into its stage no later than that (the rule of reminders.py's notifications).
        values: dict[str, Any] = {"me": me, "n": wf.entity}
        parts = []
        for i, (name, days) in enumerate(rules):
            values[f"s{i}"], values[f"c{i}"] = name, now - timedelta(days=days)
            parts.append(
                f"(x.{wf.field} == s{i} and x.created_at <= c{i}"
                f" and (x.last_activity_at is None or x.last_activity_at <= c{i})"
                f" and not exists(e for e in GxWorkflowEvent if e.entity == n"
                f" and e.record_id == x.id and e.at > c{i}"
                " and (e.from_state is None or e.from_state != e.to_state)))"
            )
        condition = f"lambda x: x.owner.id == me and ({' or '.join(parts)})"
        known = {"GxWorkflowEvent": engine.classes["GxWorkflowEvent"], "exists": exists}
        deals = records.scoped_query(wf.entity, actor)
        rotten = deals.filter(condition, known, values).count()
    tomorrow = _midnight(engine, today + timedelta(days=1))
    tasks = (
        records.scoped_query("Task", actor)
        .filter(
            lambda t: t.owner.id == me and not t.done and t.due is not None and t.due < tomorrow
        )
        .count()
    )
    plans = _unpaid(records.scoped_query("PaymentPlan", actor)).filter(
        lambda p: p.due_date <= today
    )
    if not RECEIVABLE_ROLES & actor.roles:
        plans = plans.filter(lambda p: p.contract.owner.id == me)
    pending = select(
        (p.amount_currency, count(p), total(p.amount), total(p.paid_amount)) for p in plans
    )[:]
    owed: dict[str, Decimal] = {}
    if _readable(engine, actor, "PaymentPlan", "amount"):
        for currency, _, amount, paid in pending:
            _add(owed, currency, Decimal(str(amount or 0)) - Decimal(str(paid or 0)))
    return SalesTodos(
        overdue_follow_ups=follow_ups,
        rotten_deals=rotten,
        tasks_due=tasks,
        pending_instalments=sum(n for _, n, _, _ in pending),
        pending_amount=_money(owed),
    )


# -- the GraphQL object ----------------------------------------------------------------------
From = Annotated[
    Optional[date],  # noqa: UP045 - strawberry reads the annotation
    strawberry.argument(name="from", description="First local day, included."),
]
To = Annotated[
    Optional[date],  # noqa: UP045
    strawberry.argument(description="Last local day, included."),
]


def _user_id(figure: str, value: strawberry.ID | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise _invalid(figure, "owner_id", f"{value!r} is not a user id") from None


@strawberry.type(
    description="Sales figures. Each counts only the records the caller may read; money is "
    "summed per currency. Definitions: docs/sales-analytics.md."
)
class SalesAnalytics:
    @strawberry.field(
        description="Per stage of the pipeline (open stages, then won, then lost): deals "
        "whose history entered it, their amount, conversion to the next stage and average "
        "days spent; and how many deals stand open, won and lost. from/to select the "
        "opportunities by creation day."
    )
    async def funnel(
        self,
        info: strawberry.Info,
        from_: From = None,
        to: To = None,
        owner_id: Optional[strawberry.ID] = None,  # noqa: UP045
        region: Optional[str] = None,  # noqa: UP045
    ) -> SalesFunnel:
        ctx = info.context
        actor = ctx.require_actor()
        _check_window("funnel", from_, to)
        owner = _user_id("funnel", owner_id)
        return await in_thread(
            lambda: funnel(
                ctx.engine,
                actor,
                start=from_,
                end=to,
                owner_id=owner,
                region=region,
                label=ctx.label,
            )
        )

    @strawberry.field(
        description="Open deals by expected close month: an overdue row, then this month "
        "and the following ones; amount and amount weighted by probability, per currency."
    )
    async def forecast(
        self, info: strawberry.Info, months: int = DEFAULT_FORECAST_MONTHS
    ) -> list[SalesForecastMonth]:
        ctx = info.context
        actor = ctx.require_actor()
        low, high = FORECAST_MONTHS
        if not low <= months <= high:
            raise _invalid("forecast", "months", f"must be between {low} and {high}, not {months}")
        return await in_thread(lambda: forecast(ctx.engine, actor, months=months))

    @strawberry.field(
        description="Won deals and amount, activities and new customers per period and "
        "owner or region. from defaults to 1 January, to to today; periods are whole."
    )
    async def performance(
        self,
        info: strawberry.Info,
        period: SalesPeriod = SalesPeriod.MONTH,
        group_by: SalesGroupBy = SalesGroupBy.OWNER,
        from_: From = None,
        to: To = None,
    ) -> list[SalesPerformanceRow]:
        ctx = info.context
        actor = ctx.require_actor()
        _check_window("performance", from_, to)
        return await in_thread(
            lambda: performance(
                ctx.engine, actor, period=period, group_by=group_by, start=from_, end=to
            )
        )

    @strawberry.field(
        description="Outstanding instalment amounts per customer and currency, aged by due "
        "date: not yet due, 0-30, 31-60, 61-90 and over 90 days overdue."
    )
    async def receivables(self, info: strawberry.Info) -> SalesReceivables:
        ctx = info.context
        actor = ctx.require_actor()
        return await in_thread(lambda: receivables(ctx.engine, actor))

    @strawberry.field(
        description="The workbench (工作台): new customers, opportunities, activities, "
        "contracts signed and payments received in a window (default: this month), and "
        "the caller's to-dos."
    )
    async def dashboard(
        self, info: strawberry.Info, from_: From = None, to: To = None
    ) -> SalesDashboard:
        ctx = info.context
        actor = ctx.require_actor()
        _check_window("dashboard", from_, to)
        return await in_thread(lambda: dashboard(ctx.engine, actor, start=from_, end=to))
