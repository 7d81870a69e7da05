"""Test plugin for the workflow runtime: conditions and actions a test can steer.

``test.flag`` passes when the record's ``confirmed`` field is true; ``test.explode``
raises (to prove a failing action rolls the whole transition back); ``mail`` is a
delivery channel that fails while ``MAIL_FAILS`` is set; ``nightly`` is a periodic job.
"""

from __future__ import annotations

from guanxi.engine import WorkflowError, hookimpl

name = "booking_flow"
requires = ("expo",)
MAIL_FAILS = {"on": False}
DELIVERED: list[str] = []
JOB_RUNS: list[str] = []


def flag(ctx):
    return bool(ctx.record["confirmed"])


def explode(ctx):
    raise RuntimeError("the action failed on purpose")


def refuse(ctx):
    raise WorkflowError("the action refuses on purpose")


def mail_invoice(ctx, template):
    ctx.engine.runtime.enqueue(
        "mail", key=f"invoice:{ctx.record.id}", payload={"template": template}
    )


@hookimpl
def register_conditions(register):
    register("test.flag", flag)


@hookimpl
def register_actions(register):
    register("test.explode", explode)
    register("test.refuse", refuse)
    register("test.mail_invoice", mail_invoice, params={"template": {"type": "string"}})


@hookimpl
def deliver_message(engine, message):
    if message.channel != "mail":
        return None
    if MAIL_FAILS["on"]:
        raise ConnectionError("mail server unreachable")
    DELIVERED.append(message.key)
    return True


def nightly(engine, now):
    JOB_RUNS.append(now.isoformat())
    engine.records.create("Fair", {"name": f"nightly {len(JOB_RUNS)} {now.isoformat()}"})


@hookimpl
def register_periodic_jobs(register):
    register("nightly", 86400, nightly)
