"""Firing transitions: one transaction each, every rule checked, history, timers, outbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pony.orm import db_session

from guanxi.engine import (
    SYSTEM,
    Actor,
    ConfigError,
    ConflictError,
    NotFound,
    TransitionValuesError,
    ValidationError,
    WorkflowError,
)
from guanxi.engine.worker import MAX_ATTEMPTS, deliver_outbox, run_periodic_jobs

WORKFLOW = """\
workflow: booking
label: Booking
entity: ExpoBooking
field: stage
initial: requested
states:
  requested: {label: Requested}
  confirmed: {label: Confirmed, require: [booth_m2]}
  waiting:   {label: Waiting, timeout: {after: 7d, trigger: expire}}
  paid:
    label: Paid
    final: true
    outcome: won
    on_enter: [{action: notify, to: owner, template: booking_paid}]
  cancelled: {label: Cancelled, final: true, outcome: lost}
transitions:
  - {trigger: confirm, source: requested, dest: confirmed, roles: [fair_office]}
  - trigger: invoice
    source: confirmed
    dest: waiting
    actions: [{action: test.mail_invoice, template: invoice}]
  - {trigger: pay, source: waiting, dest: paid, conditions: [test.flag]}
  - trigger: cancel
    source: [requested, confirmed, waiting]
    dest: cancelled
    payload: {reason: {type: string, required: true}}
    actions: [{action: set, fields: {cancel_reason: payload.reason}}]
  - {trigger: expire, source: waiting, dest: cancelled, unless: [test.flag]}
  - {trigger: boom, source: requested, dest: confirmed, actions: [{action: test.explode}]}
"""
#: The engine enforces record scopes: the test roles may reach every record, so these
#: tests see the workflow's own rules (a clerk lacks the workflow role fair_office).
ROLES = """\
roles:
  fair_office:
    label: Fair office
    default: {read: all, create: all, update: all, delete: all}
  clerk:
    default: {read: all, create: all, update: all, delete: all}
"""


@pytest.fixture
def plugins(test_plugin):
    flow = test_plugin("booking_flow")
    flow.MAIL_FAILS["on"] = False
    return [test_plugin("expo"), flow]


@pytest.fixture
def build(make_engine, home, plugins, clock):
    (home / "workflows" / "booking.yaml").write_text(WORKFLOW, encoding="utf-8")
    (home / "roles.yaml").write_text(ROLES, encoding="utf-8")

    def build(**kwargs):
        return make_engine(*plugins, clock=clock, **kwargs)

    return build


@pytest.fixture
def engine(build):
    return build()


@pytest.fixture
def office(engine):
    user = engine.records.create("User", {"username": "wang", "roles": ["fair_office"]})
    return Actor(id=user.id, username="wang", roles=frozenset({"fair_office"}))


@pytest.fixture
def booking(engine, office):
    fair = engine.records.create("Fair", {"name": "Chengdu spring"})
    return engine.records.create(
        "ExpoBooking", {"title": "Booth A", "fair": fair.id, "booth_m2": "12"}, actor=office
    )


def fire(engine, booking, trigger, actor=SYSTEM, **kwargs):
    return engine.runtime.fire_transition("ExpoBooking", booking.id, trigger, actor, **kwargs)


def history(engine, booking):
    return engine.runtime.history("ExpoBooking", booking.id)


def test_a_missing_state_field_is_added_as_an_enum_of_the_states(engine):
    field = engine.registry["ExpoBooking"].fields["stage"]
    assert field.type == "enum"
    assert field.choice_values() == ("requested", "confirmed", "waiting", "paid", "cancelled")


def test_a_new_record_starts_in_the_initial_state_with_a_history_event(engine, booking):
    assert booking.stage == "requested"
    (event,) = history(engine, booking)
    assert (event["trigger"], event["from_state"], event["to_state"]) == (None, None, "requested")


def test_the_state_field_cannot_be_changed_by_an_update(engine, booking):
    with pytest.raises(ValidationError) as info:
        engine.records.update("ExpoBooking", booking.id, {"stage": "paid"})
    assert info.value.field == "stage" and "transitions" in str(info.value)


def test_a_create_naming_another_state_is_refused(engine, booking):
    with pytest.raises(ValidationError):
        engine.records.create("ExpoBooking", {"title": "x", "fair": booking.fair, "stage": "paid"})


def test_firing_moves_the_state_bumps_the_version_and_writes_history(engine, booking, office):
    result = fire(engine, booking, "confirm", office)
    assert (result.previous_state, result.state) == ("requested", "confirmed")
    stored = engine.records.get("ExpoBooking", booking.id)
    assert stored.stage == "confirmed" and stored.version == booking.version + 1
    event = history(engine, booking)[-1]
    assert (event["trigger"], event["actor"], event["workflow"]) == ("confirm", "wang", "booking")
    assert event["workflow_version"] == engine.workflows["booking"].version


def test_an_unknown_trigger_lists_the_valid_ones(engine, booking):
    with pytest.raises(WorkflowError) as info:
        fire(engine, booking, "pay")
    assert "valid here: boom, cancel, confirm" in str(info.value)


def test_a_role_the_actor_lacks_is_named(engine, booking):
    clerk = Actor(id=None, username="li", roles=frozenset({"clerk"}))
    with pytest.raises(WorkflowError, match="needs role fair_office"):
        fire(engine, booking, "confirm", clerk)


def test_fields_required_to_enter_are_a_validation_error_naming_them(engine, booking, office):
    engine.records.update("ExpoBooking", booking.id, {"booth_m2": None})
    with pytest.raises(TransitionValuesError) as info:
        fire(engine, booking, "confirm", office)
    assert info.value.code == "VALIDATION"
    assert [(p.entity, p.field) for p in info.value.problems] == [("ExpoBooking", "booth_m2")]
    assert info.value.details["failures"] == ["missing required field(s) booth_m2"]


def test_a_refused_role_with_missing_fields_stays_an_invalid_transition(engine, booking):
    engine.records.update("ExpoBooking", booking.id, {"booth_m2": None})
    clerk = Actor(id=None, username="li", roles=frozenset({"clerk"}))
    with pytest.raises(WorkflowError) as info:
        fire(engine, booking, "confirm", clerk)
    assert info.value.code == "INVALID_TRANSITION"


def test_every_failure_is_reported_at_once(engine, booking):
    engine.records.update("ExpoBooking", booking.id, {"booth_m2": None})
    clerk = Actor(id=None, username="li", roles=frozenset({"clerk"}))
    with pytest.raises(WorkflowError) as info:
        fire(engine, booking, "confirm", clerk)
    assert len(info.value.details["failures"]) == 2


def test_a_failing_condition_is_named(engine, booking, office):
    fire(engine, booking, "confirm", office)
    fire(engine, booking, "invoice")
    with pytest.raises(WorkflowError, match="condition test.flag failed"):
        fire(engine, booking, "pay")


def test_a_missing_required_payload_field_is_a_validation_error(engine, booking):
    with pytest.raises(TransitionValuesError, match="payload.reason: is required") as info:
        fire(engine, booking, "cancel")
    assert info.value.field == "reason"


def test_an_undeclared_payload_key_fails(engine, booking):
    with pytest.raises(TransitionValuesError, match="payload.why: is not a payload of cancel"):
        fire(engine, booking, "cancel", payload={"reason": "x", "why": "y"})


def test_the_set_action_writes_the_payload_to_the_record(engine, booking):
    fire(engine, booking, "cancel", payload={"reason": "budget cut"})
    stored = engine.records.get("ExpoBooking", booking.id)
    assert (stored.stage, stored.cancel_reason) == ("cancelled", "budget cut")
    assert history(engine, booking)[-1]["payload"] == {"reason": "budget cut"}


def test_a_failing_action_rolls_back_the_whole_transition(engine, booking):
    with pytest.raises(RuntimeError):
        fire(engine, booking, "boom")
    stored = engine.records.get("ExpoBooking", booking.id)
    assert (stored.stage, stored.version) == ("requested", booking.version)
    assert len(history(engine, booking)) == 1


def test_nothing_leaves_a_final_state(engine, booking):
    fire(engine, booking, "cancel", payload={"reason": "x"})
    with pytest.raises(WorkflowError, match="no transition leaves this state"):
        fire(engine, booking, "confirm")


def test_a_stale_expected_version_is_a_conflict(engine, booking, office):
    fire(engine, booking, "confirm", office)
    with pytest.raises(ConflictError):
        fire(engine, booking, "invoice", expected_version=booking.version)


def test_a_record_the_actor_cannot_read_is_not_found(engine):
    with pytest.raises(NotFound):
        engine.runtime.fire_transition("ExpoBooking", 999, "confirm", SYSTEM)


def test_an_idempotency_key_returns_the_first_result_without_acting_again(engine, booking):
    first = fire(engine, booking, "cancel", payload={"reason": "x"}, idempotency_key="k1")
    again = fire(engine, booking, "cancel", payload={"reason": "x"}, idempotency_key="k1")
    assert again.state == first.state == "cancelled"
    assert again.event["id"] == first.event["id"]
    assert [e["trigger"] for e in history(engine, booking)] == [None, "cancel"]


def test_an_idempotency_key_reused_for_another_request_is_refused(engine, booking):
    fire(engine, booking, "cancel", payload={"reason": "x"}, idempotency_key="k1")
    with pytest.raises(ValidationError, match="for a different request"):
        fire(engine, booking, "cancel", payload={"reason": "other"}, idempotency_key="k1")


def test_available_transitions_say_who_may_fire_what_and_why_not(engine, booking):
    clerk = Actor(id=None, username="li", roles=frozenset({"clerk"}))
    found = {
        t.trigger: t for t in engine.runtime.available_transitions("ExpoBooking", booking.id, clerk)
    }
    assert set(found) == {"confirm", "cancel", "boom"}
    assert not found["confirm"].allowed and found["confirm"].reasons == ("needs role fair_office",)
    assert found["cancel"].allowed  # a payload still to be sent does not block it


def test_the_machine_is_shared_and_holds_no_records(engine, office):
    fair = engine.records.create("Fair", {"name": "f"})
    for i in range(50):
        rec = engine.records.create(
            "ExpoBooking", {"title": f"b{i}", "fair": fair.id, "booth_m2": "1"}
        )
        engine.runtime.fire_transition("ExpoBooking", rec.id, "confirm", office)
    assert engine.runtime.machines["booking"].models == []


# -- timers ---------------------------------------------------------------------------------
def to_waiting(engine, booking, office):
    fire(engine, booking, "confirm", office)
    fire(engine, booking, "invoice")


def timers(engine, booking):
    with db_session:
        return sorted(
            (t.state, t.status)
            for t in engine.classes["GxTimer"].select()
            if t.record_id == booking.id
        )


def test_entering_a_state_with_a_timeout_schedules_its_timer(engine, booking, office, clock):
    to_waiting(engine, booking, office)
    assert timers(engine, booking) == [("waiting", "pending")]
    assert engine.runtime.fire_due_timers(clock.now + timedelta(days=6)) == 0


def test_a_due_timer_fires_its_trigger_exactly_once(engine, booking, office, clock):
    to_waiting(engine, booking, office)
    clock.advance(days=7, seconds=1)
    assert engine.runtime.fire_due_timers() == 1
    assert engine.runtime.fire_due_timers() == 0
    assert engine.records.get("ExpoBooking", booking.id).stage == "cancelled"
    assert [e["trigger"] for e in history(engine, booking)].count("expire") == 1
    assert timers(engine, booking) == [("waiting", "done")]


def test_leaving_the_state_cancels_its_timer(engine, booking, office, clock):
    to_waiting(engine, booking, office)
    fire(engine, booking, "cancel", payload={"reason": "x"})
    assert timers(engine, booking) == [("waiting", "cancelled")]
    clock.advance(days=8)
    assert engine.runtime.fire_due_timers() == 0


def test_a_due_timer_fires_once_across_a_restart(build, engine, booking, office, clock):
    to_waiting(engine, booking, office)
    engine.close()
    clock.advance(days=8)
    restarted = build()
    assert restarted.runtime.fire_due_timers() == 1
    restarted.close()
    assert build().runtime.fire_due_timers() == 0


def test_a_timer_whose_trigger_is_no_longer_allowed_is_skipped_with_the_reason(
    engine, booking, office, clock
):
    to_waiting(engine, booking, office)
    engine.records.update("ExpoBooking", booking.id, {"confirmed": True})  # unless holds now
    clock.advance(days=8)
    engine.runtime.fire_due_timers()
    assert timers(engine, booking) == [("waiting", "skipped")]
    last = history(engine, booking)[-1]
    assert last["trigger"] == "expire" and "unless test.flag holds" in last["payload"]["skipped"]
    assert engine.records.get("ExpoBooking", booking.id).stage == "waiting"


# -- outbox and inbox ---------------------------------------------------------------------
def test_notify_is_delivered_to_the_owners_inbox_after_commit(engine, booking, office):
    to_waiting(engine, booking, office)
    engine.records.update("ExpoBooking", booking.id, {"confirmed": True})
    fire(engine, booking, "pay")
    inbox = engine.classes["GxNotification"]
    with db_session:
        assert inbox.select().count() == 0  # queued, not yet delivered
    sent, failed = deliver_outbox(engine)
    assert (sent, failed) == (2, 0)  # the invoice mail and the inbox message
    with db_session:
        (note,) = inbox.select()[:]
        assert (note.user_id, note.template) == (office.id, "booking_paid")


def test_a_failed_delivery_is_retried_with_backoff_then_kept_as_failed(
    engine, booking, office, clock, plugins
):
    flow = plugins[1]
    flow.MAIL_FAILS["on"] = True
    to_waiting(engine, booking, office)
    assert deliver_outbox(engine) == (0, 0)
    outbox = engine.classes["GxOutbox"]
    with db_session:
        row = outbox.get(key=f"invoice:{booking.id}")
        assert row.attempts == 1 and row.next_attempt_at > clock.now
        assert "mail server unreachable" in row.last_error
    for _ in range(MAX_ATTEMPTS):
        clock.advance(hours=7)
        deliver_outbox(engine)
    with db_session:
        row = outbox.get(key=f"invoice:{booking.id}")
        assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)


def test_a_retried_delivery_succeeds_once_the_channel_recovers(
    engine, booking, office, clock, plugins
):
    flow = plugins[1]
    flow.MAIL_FAILS["on"] = True
    to_waiting(engine, booking, office)
    deliver_outbox(engine)
    flow.MAIL_FAILS["on"] = False
    clock.advance(minutes=1)
    assert deliver_outbox(engine) == (1, 0)
    assert flow.DELIVERED == [f"invoice:{booking.id}"]


# -- periodic jobs ----------------------------------------------------------------------------
def test_a_periodic_job_runs_once_per_period_across_workers(build, engine, clock, plugins):
    flow = plugins[1]
    flow.JOB_RUNS.clear()
    other = build()
    assert run_periodic_jobs(engine) == 1
    assert run_periodic_jobs(other) == 0
    clock.advance(days=1)
    assert run_periodic_jobs(other) == 1
    assert len(flow.JOB_RUNS) == 2


# -- start-up ---------------------------------------------------------------------------------
def test_a_renamed_state_moves_its_records_at_start_up(build, engine, booking, office, home):
    fire(engine, booking, "confirm", office)
    engine.close()
    text = WORKFLOW.replace("confirmed", "approved") + "renamed: {confirmed: approved}\n"
    (home / "workflows" / "booking.yaml").write_text(text, encoding="utf-8")
    again = build()
    assert again.records.get("ExpoBooking", booking.id).stage == "approved"
    assert again.state_changes == ["ExpoBooking: 1 record(s) moved from confirmed to approved"]


def test_a_removed_state_holding_records_stops_start_up(build, engine, booking, office, home):
    fire(engine, booking, "confirm", office)
    engine.close()
    text = WORKFLOW.replace("confirmed", "approved")
    (home / "workflows" / "booking.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no state 'confirmed' \(1 record\(s\)\)"):
        build()


# -- several workers ------------------------------------------------------------------------
def test_two_workers_fire_each_due_timer_exactly_once(build, engine, office, clock):
    import threading

    fair = engine.records.create("Fair", {"name": "many"})
    ids = []
    for i in range(12):
        rec = engine.records.create(
            "ExpoBooking", {"title": f"b{i}", "fair": fair.id, "booth_m2": "1"}
        )
        engine.runtime.fire_transition("ExpoBooking", rec.id, "confirm", office)
        engine.runtime.fire_transition("ExpoBooking", rec.id, "invoice", SYSTEM)
        ids.append(rec.id)
    clock.advance(days=8)
    workers = [build(), build()]
    fired = [0, 0]

    def work(i):
        fired[i] = workers[i].runtime.fire_due_timers()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 12
    for record_id in ids:
        events = engine.runtime.history("ExpoBooking", record_id)
        assert [e["trigger"] for e in events].count("expire") == 1


def test_the_worker_command_does_one_pass(engine, booking, office, clock, home, database_url):
    import os
    import subprocess
    import sys
    from pathlib import Path

    to_waiting(engine, booking, office)
    env = {
        **os.environ,
        "GUANXI_HOME": str(home),
        "GUANXI_DATABASE_URL": database_url,
        "GUANXI_PLUGINS": "",
    }
    # the test plugins are not installed: the worker sees the booking workflow skipped,
    # but delivers the queued messages of the built-in and unknown channels all the same
    (home / "workflows" / "booking.yaml").unlink()
    out = subprocess.run(
        [str(Path(sys.executable).with_name("guanxi")), "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "timers fired: 0, jobs run: 0, messages delivered: 0, failed: 0" in out.stdout


@pytest.mark.parametrize(
    ("action", "status"), [("test.refuse", "skipped"), ("test.explode", "failed")]
)
def test_a_timer_whose_transition_fails_midway_changes_nothing(
    make_engine, home, plugins, clock, action, status
):
    text = WORKFLOW.replace(
        "unless: [test.flag]}", f"unless: [test.flag], actions: [{{action: {action}}}]}}"
    )
    (home / "workflows" / "booking.yaml").write_text(text, encoding="utf-8")
    (home / "roles.yaml").write_text(ROLES, encoding="utf-8")
    engine = make_engine(*plugins, clock=clock)
    user = engine.records.create("User", {"username": "wang", "roles": ["fair_office"]})
    office = Actor(id=user.id, username="wang", roles=frozenset({"fair_office"}))
    fair = engine.records.create("Fair", {"name": "f"})
    rec = engine.records.create("ExpoBooking", {"title": "t", "fair": fair.id, "booth_m2": "1"})
    to_waiting(engine, rec, office)
    before = engine.records.get("ExpoBooking", rec.id)
    clock.advance(days=8)
    engine.runtime.fire_due_timers()
    after = engine.records.get("ExpoBooking", rec.id)
    assert (after.stage, after.version) == ("waiting", before.version)
    assert timers(engine, rec) == [("waiting", status)]
    assert engine.runtime.fire_due_timers() == 0  # not retried forever


def test_a_payload_outside_its_range_is_refused(make_engine, home, plugins, clock):
    text = WORKFLOW.replace(
        "payload: {reason: {type: string, required: true}}",
        "payload: {reason: {type: string, required: true}, refund: {type: int, max: 100}}",
    )
    (home / "workflows" / "booking.yaml").write_text(text, encoding="utf-8")
    (home / "roles.yaml").write_text(ROLES, encoding="utf-8")
    engine = make_engine(*plugins, clock=clock)
    fair = engine.records.create("Fair", {"name": "f"})
    rec = engine.records.create("ExpoBooking", {"title": "t", "fair": fair.id})
    with pytest.raises(TransitionValuesError, match="payload.refund: must be at most 100"):
        fire(engine, rec, "cancel", payload={"reason": "x", "refund": 500})
