"""A small fake plugin for the duplicate matcher: owned companies identified by name or
phone, people owned through their company identified by e-mail, and a ``rep`` role that
reads and writes only its own records. A test may put a barrier into ``GATE``: company
creates then wait there after their keys are written, before the duplicate check."""

from __future__ import annotations

import threading

from guanxi.engine import hookimpl

name = "dedup"
GATE: list[threading.Barrier] = []


@hookimpl
def register_entities(register):
    register(
        {
            "name": "Company",
            "owned": True,
            "duplicate_keys": ["name", "phone"],
            "fields": {
                "name": {"type": "string", "required": True, "max_length": 120},
                "phone": {"type": "phone"},
                "notes": {"type": "text"},
            },
        }
    )
    register(
        {
            "name": "Person",
            "owner_via": "company",
            "duplicate_keys": ["email"],
            "fields": {
                "company": {"type": "ref", "to": "Company", "reverse": "people"},
                "name": {"type": "string", "required": True, "max_length": 120},
                "email": {"type": "email"},
            },
        }
    )


@hookimpl
def register_roles(register):
    register(
        "rep",
        {"default": {"read": "own", "create": "own", "update": "own", "delete": "own"}},
    )


@hookimpl
def record_written(engine, event):
    if GATE and event.entity == "Company" and event.action == "create":
        try:
            GATE[0].wait(timeout=1)
        except threading.BrokenBarrierError:
            pass  # SQLite: the other writer waits for this transaction to end
