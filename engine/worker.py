"""The worker: fires due timers, runs plugin periodic jobs, delivers outbox messages.

``guanxi worker`` runs :func:`run_worker`; ``guanxi serve --worker`` runs the same loop
in a thread of the server. Several workers may run against one PostgreSQL database:
timers and messages are claimed with ``FOR UPDATE SKIP LOCKED`` and every periodic job
is claimed once per period through a unique row, so nothing runs twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pony.orm import TransactionIntegrityError
from pony.orm.dbapiprovider import IntegrityError

from .errors import ConflictError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

log = logging.getLogger("guanxi.worker")

#: Delivery attempts before a message is kept as failed.
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 6 * 3600
INBOX = "inbox"


@dataclass(frozen=True)
class Message:
    """One outbox message as a delivery hook receives it."""

    id: int
    channel: str
    key: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class WorkerPass:
    """What one pass of the worker did."""

    timers: int
    jobs: int
    delivered: int
    failed: int

    @property
    def busy(self) -> bool:
        return bool(self.timers or self.jobs or self.delivered or self.failed)


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt: 30 s, 1 min, 2 min ... at most 6 h."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def run_periodic_jobs(engine: Engine, now: datetime | None = None) -> int:
    """Run each periodic job whose current period no worker has claimed yet.

    The claim (a unique row per job and period) and the job's writes share one
    transaction: a failing job releases its claim and is tried again on the next pass.
    """
    now = now or engine.now()
    runs = engine.classes["GxJobRun"]
    done = 0
    for job in engine.periodic_jobs:
        interval = float(job.options["interval_seconds"])
        period = int(now.timestamp() // interval)
        try:
            with engine.records.transaction(write=True):
                if runs.get(name=job.name, period=period) is not None:
                    continue
                runs(name=job.name, period=period, started_at=engine.now())
                runs.select().filter(
                    "lambda r: r.name == n and r.period < p - 10", {}, {"n": job.name, "p": period}
                ).delete(bulk=True)
                job.value(engine, now)
            done += 1
        except (ConflictError, TransactionIntegrityError, IntegrityError):
            continue  # another worker claimed this period first
        except Exception:
            log.exception("periodic job %s failed; it will be tried again", job.name)
    return done


def deliver_outbox(
    engine: Engine, now: datetime | None = None, limit: int = 100
) -> tuple[int, int]:
    """Deliver due outbox messages, each in its own transaction; return (sent, failed).

    Delivery is at least once: a message whose delivery raised is retried with backoff and
    kept as ``failed`` after MAX_ATTEMPTS; receivers drop repeats by the message key.
    """
    outbox = engine.classes["GxOutbox"]
    now = now or engine.now()
    postgres = engine.url.provider == "postgres"
    sent = failed = 0
    for _ in range(limit):
        with engine.records.transaction(write=True):
            query = (
                outbox.select()
                .filter(
                    "lambda m: m.status == 'pending' and m.next_attempt_at <= now", {}, {"now": now}
                )
                .order_by("lambda m: (m.next_attempt_at, m.id)", {}, {})
            )
            if postgres:
                query = query.for_update(skip_locked=True)
            row = query.first()
            if row is None:
                break
            message = Message(row.id, row.channel, row.key, dict(row.payload or {}), row.attempts)
            row.attempts += 1
            try:
                handled = _deliver(engine, message)
                if not handled:
                    raise LookupError(f"no plugin delivers channel {message.channel!r}")
            except Exception as exc:  # a failed delivery is recorded, never lost
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = "failed"
                    failed += 1
                else:
                    row.next_attempt_at = now + backoff(row.attempts)
                continue
            row.status = "delivered"
            row.delivered_at = engine.now()
            sent += 1
    return sent, failed


def _deliver(engine: Engine, message: Message) -> bool:
    if message.channel == INBOX:
        payload = message.payload
        engine.classes["GxNotification"](
            user_id=int(payload["user"]),
            template=str(payload.get("template", "")),
            payload=payload,
            key=message.key,
            created_at=engine.now(),
        )
        return True
    return bool(engine.hook.deliver_message(engine=engine, message=message))


def worker_pass(engine: Engine, now: datetime | None = None) -> WorkerPass:
    """One pass: due timers, then periodic jobs, then the outbox."""
    timers = engine.runtime.fire_due_timers(now) if engine.runtime is not None else 0
    jobs = run_periodic_jobs(engine, now)
    sent, failed = deliver_outbox(engine, now)
    return WorkerPass(timers, jobs, sent, failed)


def run_worker(
    engine: Engine,
    *,
    poll_seconds: float = 1.0,
    stop: threading.Event | None = None,
    once: bool = False,
    on_pass: Callable[[WorkerPass], None] | None = None,
) -> None:
    """Loop over :func:`worker_pass` until ``stop`` is set (or once)."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            # no enclosing session: each timer, job and message is its own transaction
            result = worker_pass(engine)
        except Exception:
            log.exception("worker pass failed; retrying")
            result = WorkerPass(0, 0, 0, 0)
        if on_pass is not None:
            on_pass(result)
        if once:
            return
        if not result.busy:
            stop.wait(poll_seconds)
        else:
            time.sleep(0)
