"""Test plugin: the condition and actions the example workflows name.

``example.amount_received`` takes an optional ``min`` amount; ``example.send_invoice``
takes a required ``template`` and an optional ``copies`` count; ``example.log`` takes no
parameters (it registers no schema).
"""

from __future__ import annotations

from guanxi.engine import hookimpl

name = "example_actions"
CALLS: list[tuple[str, dict]] = []


def amount_received(ctx, min=0):
    CALLS.append(("example.amount_received", {"min": min}))
    return True


def send_invoice(ctx, template, copies=1):
    CALLS.append(("example.send_invoice", {"template": template, "copies": copies}))


def log(ctx):
    CALLS.append(("example.log", {}))


@hookimpl
def register_conditions(register):
    register("example.amount_received", amount_received, params={"min": {"type": "number"}})


@hookimpl
def register_actions(register):
    register(
        "example.send_invoice",
        send_invoice,
        params={
            "template": {"type": "string", "required": True},
            "copies": {"type": "int"},
        },
    )
    register("example.log", log)
