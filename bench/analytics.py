"""Sales analytics: each figure in SQL aggregates vs. a naive Python loop over the same rows.

    .venv/bin/python bench/analytics.py [--size 2000] [--repeat 3] [--seed 7]
                                        [--database-url postgres://...]

Fills a throw-away database (SQLite in a temporary folder, or the empty database of
``--database-url``) with a year of sales work for ``--size`` opportunities: 20 customer
managers in four teams, a customer per four opportunities, opportunities created day by
day and moved along the pipeline by real transitions (so the workflow history is real),
contracts with instalments and confirmed payments for the signed ones, an activity per
opportunity and some tasks - everything through the record API and the workflow runtime,
with a progress bar.

Then, as an executive (who reads everything), it times each figure of
``plugins/sales/analytics.py`` - funnel, forecast, performance, receivables, dashboard - the
way the API computes it (a few GROUP BY queries) and the naive way: load every row as an
ORM object and add up in Python, reading each deal's history on its own. It checks both
give the same answer and prints the median of ``--repeat`` runs of each, and the ratio.

The default (2000 opportunities) runs in about half a minute; building the data through
the record API is most of it (a fired transition costs about 1.5 ms), so ``--size 20000``
takes some four minutes, mostly building. Only ratios from the same run compare.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pony.orm import db_session
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from guanxi.engine import SYSTEM, Config, Engine, Money
from guanxi.plugins.sales import analytics

TIMEZONE = "Asia/Shanghai"
#: "Today" of the generated data (a fixed clock makes runs comparable).
TODAY = datetime(2027, 6, 15, 2, 0)  # 10:00 in Shanghai
DAYS = 365
TEAMS = ("East", "West", "North", "South")
REPS_PER_TEAM = 5
REGIONS = ("East", "West", "North", "South", "Central")
#: Where a deal ends up (share of deals) and the triggers that take it there.
PATHS = (
    (0.35, ()),
    (0.20, ("schedule_visit",)),
    (0.12, ("schedule_visit", "propose")),
    (0.10, ("schedule_visit", "propose", "sign")),
    (0.08, ("schedule_visit", "propose", "sign", "deliver")),
    (0.08, ("lose",)),
    (0.07, ("schedule_visit", "propose", "lose")),
)


class Clock:
    def __init__(self) -> None:
        self.now = TODAY

    def __call__(self) -> datetime:
        return self.now


# -- the data ---------------------------------------------------------------------------------
def build(engine: Engine, clock: Clock, size: int, seed: int, progress: Progress) -> None:
    """Teams and people, customers, a year of deals moved along, contracts with instalments
    and payments, activities and tasks; the clock ends at TODAY."""
    rng = random.Random(seed)
    records = engine.records
    start = TODAY - timedelta(days=DAYS)
    clock.now = start
    reps = []
    for team in TEAMS:
        records.create("Team", {"name": team})
        engine.auth.create_user(f"lead_{team.lower()}", roles=["sales_supervisor"], team=team)
        for i in range(REPS_PER_TEAM):
            user = engine.auth.create_user(
                f"rep_{team.lower()}_{i}", roles=["customer_manager"], team=team
            )
            reps.append(user.id)
    engine.auth.create_user("boss", roles=["executive"])

    # who, when and how far each deal goes - decided before anything is written
    n_customers = max(size // 4, 1)
    customer_of = [rng.randrange(n_customers) for _ in range(size)]
    created_on = sorted(rng.randrange(DAYS) for _ in range(size))
    paths = rng.choices([p for _, p in PATHS], [w for w, _ in PATHS], k=size)
    moves: list[tuple[datetime, int, str]] = []  # (when, deal index, trigger)
    for i, (day, triggers) in enumerate(zip(created_on, paths, strict=True)):
        at = start + timedelta(days=day, hours=2)
        for trigger in triggers:
            at += timedelta(days=rng.randrange(1, 20), hours=rng.randrange(0, 8))
            if at < TODAY:
                moves.append((at, i, trigger))
    moves.sort()
    signed = sum(1 for _, _, trigger in moves if trigger == "sign")
    task = progress.add_task("building the data", total=n_customers + size + len(moves) + signed)

    customers = records.create_many(
        "Customer",
        (
            {"name": f"customer {i}", "region": rng.choice(REGIONS), "owner": reps[i % len(reps)]}
            for i in range(n_customers)
        ),
        allow_duplicate=True,
    )
    contacts = records.create_many(
        "Contact", ({"customer": c, "name": f"contact {c}"} for c in customers)
    )
    progress.advance(task, n_customers)

    ids: list[int] = []
    for day in range(DAYS):
        clock.now = start + timedelta(days=day, hours=1)
        rows = [
            {
                "title": f"deal {i}",
                "customer": customers[customer_of[i]],
                "contact": contacts[customer_of[i]],
                "owner": reps[customer_of[i] % len(reps)],
                "amount": Money(
                    Decimal(rng.randrange(1_000, 200_000)), "USD" if rng.random() < 0.1 else "CNY"
                ),
                "expected_close_date": (
                    start + timedelta(days=day + rng.randrange(10, 200))
                ).date(),
            }
            for i in range(len(ids), bisect.bisect_right(created_on, day))
        ]
        if rows:
            ids.extend(records.create_many("Opportunity", rows))
            progress.advance(task, len(rows))

    for at, i, trigger in moves:
        clock.now = at
        payload = {"reason": "price"} if trigger == "lose" else None
        engine.runtime.fire_transition("Opportunity", ids[i], trigger, SYSTEM, payload=payload)
        progress.advance(task, 1)

    clock.now = TODAY
    for at, i, trigger in moves:
        if trigger != "sign":
            continue
        flt = {"opportunity": {"id": {"eq": ids[i]}}}
        (contract,) = records.list("Contract", filter=flt).records
        amount, third = contract.amount, (contract.amount.amount / 3).quantize(Decimal("0.01"))
        parts = (third, third, amount.amount - 2 * third)
        instalments = [
            {
                "due_date": at.date() + timedelta(days=30 * (j + 1)),
                "amount": Money(part, amount.currency),
            }
            for j, part in enumerate(parts)
        ]
        records.update("Contract", contract.id, {"instalments": instalments})
        if rng.random() < 0.7:
            payment = {
                "customer": contract.customer,
                "contract": contract.id,
                "amount": Money(third, amount.currency),
                "paid_on": min(at.date() + timedelta(days=25), TODAY.date()),
                "confirmed": True,
            }
            records.create("Payment", payment)
        progress.advance(task, 1)

    activities = []
    for i in range(size):
        k = rng.randrange(n_customers)
        at = start + timedelta(days=rng.randrange(DAYS), hours=rng.randrange(24))
        activities.append(
            {
                "customer": customers[k],
                "owner": reps[k % len(reps)],
                "kind": rng.choice(("call", "visit", "meeting", "email")),
                "subject": f"activity {i}",
                "at": at,
                "next_follow_up_at": at + timedelta(days=rng.randrange(1, 30)),
            }
        )
    records.create_many("Activity", activities)
    tasks = (
        {
            "title": f"task {i}",
            "owner": reps[i % len(reps)],
            "due": TODAY + timedelta(days=rng.randrange(-30, 30)),
            "done": rng.random() < 0.5,
        }
        for i in range(size // 5)
    )
    records.create_many("Task", tasks)
    progress.update(task, completed=progress.tasks[task].total)


# -- the naive way ----------------------------------------------------------------------------
def _local(engine: Engine, moment: datetime) -> date:
    return moment.replace(tzinfo=UTC).astimezone(engine.config.tz).date()


def _money(sums: dict[str, Decimal]) -> list[Any]:
    return analytics._money(sums)


def naive_funnel(engine: Engine, actor: Any) -> Any:
    wf = engine.runtime.workflow_for("Opportunity")
    order = [s for s, st in wf.states.items() if st.outcome is None]
    order += [s for s, st in wf.states.items() if st.outcome == "won"]
    path = list(order)
    order += [s for s, st in wf.states.items() if st.outcome == "lost"]
    following = dict(zip(path, path[1:], strict=False))
    reached: dict[str, set[int]] = defaultdict(set)
    amounts: dict[str, dict[str, Decimal]] = defaultdict(dict)
    stays: dict[str, list[float]] = defaultdict(list)
    standing: dict[Any, int] = defaultdict(int)
    closed: dict[str, dict[str, Decimal]] = {"won": {}, "lost": {}}
    with engine.records.transaction():
        for deal in engine.records.scoped_query("Opportunity", actor):
            entered_at: dict[str, datetime] = {}
            for event in engine.runtime.history("Opportunity", deal.id):
                to, frm = event["to_state"], event["from_state"]
                if deal.id not in reached[to]:
                    reached[to].add(deal.id)
                    analytics._add(amounts[to], deal.amount_currency, deal.amount)
                if frm == to:
                    continue
                if frm in entered_at:
                    stays[frm].append((event["at"] - entered_at.pop(frm)).total_seconds() / 86400)
                entered_at[to] = event["at"]
            outcome = wf.states[deal.stage].outcome
            standing[outcome] += 1
            if outcome in closed:
                analytics._add(closed[outcome], deal.amount_currency, deal.amount)
    stages = []
    for state in order:
        after = following.get(state)
        n = len(reached[state])
        went_on = len(reached[state] & reached[after]) if after else 0
        days = stays[state]
        stages.append(
            analytics.SalesFunnelStage(
                stage=state,
                label=wf.states[state].label,
                outcome=wf.states[state].outcome,
                deals=n,
                amount=_money(amounts[state]),
                next_stage=after,
                conversion=round(went_on / n, 4) if after and n else None,
                average_days=round(sum(days) / len(days), 2) if days else None,
                stays=len(days),
            )
        )
    return analytics.SalesFunnel(
        stages=stages,
        open=standing[None],
        won=standing["won"],
        lost=standing["lost"],
        won_amount=_money(closed["won"]),
        lost_amount=_money(closed["lost"]),
    )


def naive_forecast(engine: Engine, actor: Any, months: int = 6) -> Any:
    wf = engine.runtime.workflow_for("Opportunity")
    today = analytics.local_today(engine)
    horizon = analytics._month_start(today, months)
    keys = [None, *(analytics._month_start(today, i) for i in range(months))]
    deals: dict[Any, int] = defaultdict(int)
    plain: dict[Any, dict[str, Decimal]] = defaultdict(dict)
    weighted: dict[Any, dict[str, Decimal]] = defaultdict(dict)
    with engine.records.transaction():
        for o in engine.records.scoped_query("Opportunity", actor):
            when = o.expected_close_date
            if wf.states[o.stage].outcome or when is None or o.amount is None or when >= horizon:
                continue
            key = None if when < today else date(when.year, when.month, 1)
            deals[key] += 1
            analytics._add(plain[key], o.amount_currency, o.amount)
            analytics._add(weighted[key], o.amount_currency, o.amount * (o.probability or 0))
    return [
        analytics.SalesForecastMonth(
            month=None if key is None else f"{key.year:04d}-{key.month:02d}",
            overdue=key is None,
            deals=deals[key],
            amount=_money(plain[key]),
            weighted=_money(weighted[key]),
        )
        for key in keys
    ]


def naive_performance(engine: Engine, actor: Any) -> Any:
    """By owner and month, this year."""
    wf = engine.runtime.workflow_for("Opportunity")
    won_states = {s for s, st in wf.states.items() if st.outcome == "won"}
    today = analytics.local_today(engine)
    spans = analytics.periods(analytics.SalesPeriod.MONTH, date(today.year, 1, 1), today)

    def bucket(moment: datetime) -> int | None:
        day = _local(engine, moment)
        for i, span in enumerate(spans):
            if span.start <= day <= span.end:
                return i
        return None

    won: dict[Any, int] = defaultdict(int)
    won_amount: dict[Any, dict[str, Decimal]] = defaultdict(dict)
    done: dict[Any, int] = defaultdict(int)
    made: dict[Any, int] = defaultdict(int)
    names: dict[int, str] = {}
    with engine.records.transaction():
        for o in engine.records.scoped_query("Opportunity", actor):
            first = next(
                (
                    e["at"]
                    for e in engine.runtime.history("Opportunity", o.id)
                    if e["to_state"] in won_states
                ),
                None,
            )
            b = bucket(first) if first else None
            if b is not None:
                key = (b, o.owner.id if o.owner else None)
                won[key] += 1
                analytics._add(won_amount[key], o.amount_currency, o.amount)
        for a in engine.records.scoped_query("Activity", actor):
            b = bucket(a.at)
            if b is not None:
                done[(b, a.owner.id if a.owner else None)] += 1
        for c in analytics._customers(engine, actor):
            b = bucket(c.created_at)
            if b is not None:
                made[(b, c.owner.id if c.owner else None)] += 1
        for u in engine.records.scoped_query("User", actor):
            names[u.id] = u.username
    keys = sorted(set(won) | set(done) | set(made), key=lambda k: (k[0], k[1] is None, k[1] or 0))
    return [
        analytics.SalesPerformanceRow(
            period=spans[b].name,
            start=spans[b].start,
            end=spans[b].end,
            owner_id=None if owner is None else str(owner),
            owner=names.get(owner),
            region=None,
            won_deals=won[(b, owner)],
            won_amount=_money(won_amount[(b, owner)]),
            activities=done[(b, owner)],
            new_customers=made[(b, owner)],
        )
        for b, owner in keys
    ]


def naive_receivables(engine: Engine, actor: Any) -> Any:
    today = analytics.local_today(engine)
    columns = [column for column, _ in analytics.AGES]
    per: dict[tuple[int, str], dict[str, Decimal]] = defaultdict(dict)
    names: dict[int, str] = {}
    with engine.records.transaction():
        for p in engine.records.scoped_query("PaymentPlan", actor):
            owed = Decimal(str(p.amount)) - Decimal(str(p.paid_amount or 0))
            if owed <= 0:
                continue
            overdue = (today - p.due_date).days
            column = next(
                (c for c, n in analytics.AGES if n is not None and overdue > n), "not_due"
            )
            customer = p.contract.customer.id
            sums = per[(customer, p.amount_currency)]
            sums[column] = sums.get(column, Decimal(0)) + owed
        for c in engine.records.scoped_query("Customer", actor):
            names[c.id] = c.name
    totals: dict[str, dict[str, Decimal]] = defaultdict(dict)
    rows = []
    for (customer, currency), sums in per.items():
        for column, amount in sums.items():
            totals[currency][column] = totals[currency].get(column, Decimal(0)) + amount
        rows.append(
            analytics.SalesCustomerReceivable(
                customer_id=str(customer),
                customer_name=names.get(customer),
                **analytics._aged(currency, sums, columns),
            )
        )
    rows.sort(key=lambda r: (-r.total, r.customer_name or "", int(r.customer_id)))
    return analytics.SalesReceivables(
        customers=rows,
        totals=[
            analytics.SalesAgedAmounts(**analytics._aged(c, s, columns))
            for c, s in sorted(totals.items())
        ],
    )


def naive_dashboard(engine: Engine, actor: Any) -> Any:
    today = analytics.local_today(engine)
    start = today.replace(day=1)
    lo, hi = analytics._window(engine, start, today)
    records = engine.records
    with records.transaction():
        new_customers = sum(
            1 for c in analytics._customers(engine, actor) if lo <= c.created_at < hi
        )
        new_deals = sum(
            1 for o in records.scoped_query("Opportunity", actor) if lo <= o.created_at < hi
        )
        activities = sum(1 for a in records.scoped_query("Activity", actor) if lo <= a.at < hi)
        signed: dict[str, Decimal] = {}
        contracts = 0
        for c in records.scoped_query("Contract", actor):
            if c.signed_on and start <= c.signed_on <= today:
                contracts += 1
                analytics._add(signed, c.amount_currency, c.amount)
        paid: dict[str, Decimal] = {}
        payments = 0
        for p in records.scoped_query("Payment", actor):
            if p.confirmed and start <= p.paid_on <= today:
                payments += 1
                analytics._add(paid, p.amount_currency, p.amount)
        todos = analytics._todos(engine, actor, today, engine.now())  # the caller's own: few
    return analytics.SalesDashboard(
        from_=start,
        to=today,
        new_customers=new_customers,
        new_opportunities=new_deals,
        activities=activities,
        contracts_signed=contracts,
        contract_amount=_money(signed),
        payments=payments,
        payments_received=_money(paid),
        todos=todos,
    )


FIGURES: list[tuple[str, Callable[[Engine, Any], Any], Callable[[Engine, Any], Any]]] = [
    ("funnel", lambda e, a: analytics.funnel(e, a), naive_funnel),
    ("forecast (6 months)", lambda e, a: analytics.forecast(e, a, months=6), naive_forecast),
    ("performance (month, owner)", lambda e, a: analytics.performance(e, a), naive_performance),
    ("receivables", analytics.receivables, naive_receivables),
    ("dashboard", lambda e, a: analytics.dashboard(e, a), naive_dashboard),
]


# -- running ----------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    runs = []
    result = None
    for _ in range(repeat):
        began = time.perf_counter()
        with db_session:
            result = fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), result


def plain(value: Any) -> Any:
    """A figure as plain data, to compare the two ways."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    return dataclasses.asdict(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2000, help="opportunities (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", help="an empty database to fill (default: SQLite)")
    args = parser.parse_args(argv)
    if args.size < 1 or args.repeat < 1:
        parser.error("--size and --repeat must be at least 1")
    console = Console()
    home = Path(tempfile.mkdtemp(prefix="guanxi-bench-analytics-"))
    clock = Clock()
    try:
        config = Config(
            home=home, database_url=args.database_url, plugins=("sales",), timezone=TIMEZONE
        )
        engine = Engine(config, use_entry_points=True, clock=clock)
        engine.open(migrate=True)
        began = time.perf_counter()
        with Progress(console=console, transient=True) as progress:
            build(engine, clock, args.size, args.seed, progress)
        console.print(
            f"built {args.size} opportunities in {time.perf_counter() - began:.1f} s "
            f"({engine.config.db_url.split('://')[0]}, zone {TIMEZONE})"
        )
        boss = engine.auth.actor_for(engine.auth.user_id("boss"))
        table = Table(title=f"sales analytics, {args.size} opportunities, median of {args.repeat}")
        for column in ("figure", "SQL aggregates", "naive Python loop", "naive / SQL", "same"):
            left = column == "figure"
            table.add_column(column, justify="left" if left else "right", no_wrap=left)
        differ = False
        for name, sql, naive in FIGURES:
            fast, ours = timed(lambda sql=sql: sql(engine, boss), args.repeat)
            slow, theirs = timed(lambda naive=naive: naive(engine, boss), args.repeat)
            same = plain(ours) == plain(theirs)
            differ |= not same
            table.add_row(
                name,
                f"{fast * 1000:.1f} ms",
                f"{slow * 1000:.1f} ms",
                f"{slow / fast:.1f}x",
                "yes" if same else "NO",
            )
        console.print(table)
        engine.close()
        if differ:
            console.print("[red]the two ways disagree on a figure marked NO[/red]")
            return 1
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
