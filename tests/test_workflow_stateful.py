"""Random walks through every shipped and test workflow (hypothesis stateful testing).

Whatever triggers, actors and payloads arrive, in any order: a record's state is always
a declared one, its history replays to its current state, and nothing leaves a final
state.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from guanxi.engine import (
    SYSTEM,
    Actor,
    ConflictError,
    NotFound,
    PermissionDenied,
    ValidationError,
    WorkflowError,
)

from .test_workflow_runtime import ROLES, WORKFLOW

TESTS = Path(__file__).parent
SHIPPED = sorted(
    p.name for p in resources.files("guanxi.workflows").iterdir() if p.name.endswith(".yaml")
)
CASES = {
    "expo_booking (issue example)": ("file", TESTS / "workflows" / "expo_booking.yaml"),
    "expo_booking (every key)": ("file", TESTS / "workflows" / "expo_booking_full.yaml"),
    "booking (runtime tests)": ("text", WORKFLOW),
    **{f"shipped {name}": ("shipped", name) for name in SHIPPED},
}
ACTORS = [
    SYSTEM,
    Actor(id=None, username="office", roles=frozenset({"fair_office"})),
    Actor(id=None, username="clerk", roles=frozenset({"clerk"})),
]


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_walks_keep_the_workflow_invariants(case, make_engine, home, test_plugin):
    kind, source = CASES[case]
    target = home / "workflows" / "walk.yaml"
    (home / "roles.yaml").write_text(ROLES, encoding="utf-8")
    if kind == "file":
        shutil.copy(source, target)
    elif kind == "text":
        target.write_text(source, encoding="utf-8")
    plugins = [test_plugin(n) for n in ("expo", "example_actions", "booking_flow")]
    if kind == "shipped":  # the shipped plugins alone: no test entity clashes with theirs
        engine = make_engine(use_entry_points=True)
    else:
        engine = make_engine(*plugins, test_plugin("expo_status"))
    (wf,) = [w for w in engine.workflows.values() if w.source.endswith(("walk.yaml",))] or list(
        engine.workflows.values()
    )
    triggers = sorted({t.trigger for t in wf.transitions})
    samples = {
        "string": "walk",
        "text": "walk",
        "int": 2,
        "decimal": "2",
        "date": "2027-01-01",
        "bool": True,
        "enum": None,
    }

    def payload_for(trigger: str) -> dict:
        t = next(t for t in wf.transitions if t.trigger == trigger)
        return {
            name: spec.choices[0].value if spec.type == "enum" else samples.get(spec.type)
            for name, spec in t.payload.items()
        }

    moves: list[str] = []
    if wf.entity == "ExpoBooking":
        fair = engine.records.create("Fair", {"name": "walk fair"})

        def new_record(booth, confirmed):
            return {"title": "walk", "fair": fair.id, "booth_m2": booth, "confirmed": confirmed}

    elif wf.entity == "Opportunity":  # the shipped sales pipeline
        customer = engine.records.create("Customer", {"name": "Walk Wines"})
        contact = engine.records.create("Contact", {"customer": customer.id, "name": "Li"})

        def new_record(booth, confirmed):
            amount = {"amount": "100"} if booth else None
            return {
                "title": "walk",
                "customer": customer.id,
                "contact": contact.id,
                "amount": amount,
                "expected_close_date": "2027-06-30" if confirmed else None,
            }

    else:
        pytest.fail(f"no record factory for {wf.entity}: add one for this shipped workflow")

    class Walk(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[int] = []

        @rule(booth=st.sampled_from(["5", None]), confirmed=st.booleans())
        def create(self, booth, confirmed):
            record = engine.records.create(wf.entity, new_record(booth, confirmed))
            self.ids.append(record.id)

        @rule(data=st.data(), actor=st.sampled_from(ACTORS), valid=st.sampled_from([True, False]))
        def fire(self, data, actor, valid):
            if not self.ids:
                return
            # a drawn Random spreads choices better than sampled_from's bias to the first
            rnd = data.draw(st.randoms(use_true_random=False))
            states = {i: engine.records.get(wf.entity, i)[wf.field] for i in self.ids}
            open_ids = [i for i, s in states.items() if not wf.states[s].final]
            record_id = rnd.choice(open_ids if valid and open_ids else self.ids)
            before = states[record_id]
            offered = sorted({t.trigger for t in wf.transitions if before in t.sources})
            trigger = rnd.choice(offered if valid and offered else triggers)
            payload = data.draw(st.sampled_from([payload_for(trigger), None, {"bogus": 1}]))
            try:
                engine.runtime.fire_transition(wf.entity, record_id, trigger, actor, payload)
            except (
                WorkflowError,
                ValidationError,
                ConflictError,
                NotFound,
                PermissionDenied,
                RuntimeError,
            ):
                # RuntimeError: the test plugin's failing action; it must change nothing
                assert engine.records.get(wf.entity, record_id)[wf.field] == before
                return
            assert not wf.states[before].final, f"left final state {before}"
            moves.append(trigger)

        @invariant()
        def states_are_declared_and_history_replays(self):
            for record_id in self.ids:
                state = engine.records.get(wf.entity, record_id)[wf.field]
                assert state in wf.states
                events = engine.runtime.history(wf.entity, record_id)
                assert events[0]["from_state"] is None
                for previous, event in zip(events, events[1:], strict=False):
                    assert event["from_state"] == previous["to_state"]
                    assert not wf.states[previous["to_state"]].final
                assert events[-1]["to_state"] == state

    run_state_machine_as_test(
        Walk,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    reached = {wf.states[t.dest].name for t in wf.transitions if t.trigger in moves}
    assert any(wf.states[s].final for s in reached), f"no walk reached a final state: {moves}"
