"""Several processes fire on one record at once: exactly one wins each race."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from guanxi.engine import SYSTEM

from .test_workflow_runtime import WORKFLOW  # the same workflow as the runtime tests

RACERS = 4
RACER = Path(__file__).with_name("racer.py")


@pytest.fixture
def setup(make_engine, home, test_plugin, database_url):
    (home / "workflows" / "booking.yaml").write_text(WORKFLOW, encoding="utf-8")
    engine = make_engine(test_plugin("expo"), test_plugin("booking_flow"))
    fair = engine.records.create("Fair", {"name": "f"})
    booking = engine.records.create("ExpoBooking", {"title": "b", "fair": fair.id, "booth_m2": "3"})
    engine.runtime.fire_transition("ExpoBooking", booking.id, "confirm", SYSTEM)
    booking = engine.records.get("ExpoBooking", booking.id)
    return engine, booking, home, database_url


def race(database_url, home, record_id, trigger, version) -> list[str]:
    start_at = time.time() + 4  # every racer is built and waiting by then
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                str(RACER),
                database_url,
                str(home),
                str(record_id),
                trigger,
                str(version),
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        outcomes.append(out.strip())
    return sorted(outcomes)


def test_with_the_version_exactly_one_wins_and_the_others_get_a_conflict(setup):
    engine, booking, home, url = setup
    outcomes = race(url, home, booking.id, "invoice", booking.version)
    assert outcomes == ["conflict"] * (RACERS - 1) + ["won"]
    events = engine.runtime.history("ExpoBooking", booking.id)
    assert [e["trigger"] for e in events].count("invoice") == 1
    stored = engine.records.get("ExpoBooking", booking.id)
    assert (stored.stage, stored.version) == ("waiting", booking.version + 1)


def test_without_the_version_one_wins_and_the_others_find_the_trigger_gone(setup):
    engine, booking, home, url = setup
    outcomes = race(url, home, booking.id, "invoice", 0)
    assert outcomes.count("won") == 1
    assert set(outcomes) - {"won"} <= {"invalid", "conflict"}
    events = engine.runtime.history("ExpoBooking", booking.id)
    assert [e["trigger"] for e in events].count("invoice") == 1
