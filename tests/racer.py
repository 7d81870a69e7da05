"""A process of the transition race (tests/test_workflow_race.py).

Usage: racer.py DATABASE_URL HOME RECORD_ID TRIGGER EXPECTED_VERSION START_AT
Builds its own Engine, waits for START_AT (a Unix time) so every racer fires together,
fires once, and prints "won", "conflict" or "invalid".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import load_test_plugin  # noqa: E402

from guanxi.engine import SYSTEM, Config, ConflictError, Engine, WorkflowError  # noqa: E402


def main() -> None:
    url, home, record_id, trigger, version, start_at = sys.argv[1:]
    plugins = [load_test_plugin("expo"), load_test_plugin("booking_flow")]
    engine = Engine(
        Config(home=Path(home), database_url=url), plugins=plugins, use_entry_points=False
    )
    engine.open()
    while time.time() < float(start_at):
        time.sleep(0.001)
    try:
        engine.runtime.fire_transition(
            "ExpoBooking",
            int(record_id),
            trigger,
            SYSTEM,
            expected_version=int(version) if int(version) else None,
        )
        outcome = "won"
    except ConflictError:
        outcome = "conflict"
    except WorkflowError:
        outcome = "invalid"
    finally:
        engine.close()
    print(outcome)


if __name__ == "__main__":
    main()
