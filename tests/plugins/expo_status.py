"""Test plugin: gives the expo plugin's ``ExpoBooking`` the fields its workflows bind to.

``status`` holds the state of the ``expo_booking`` workflow (an enum of its states, as
every state field must be); ``account_manager`` and ``paid_at`` let the examples use
``assign_owner`` and ``now``.
"""

from __future__ import annotations

from guanxi.engine import hookimpl

name = "expo_status"
requires = ("expo",)

STATES = ["requested", "confirmed", "waiting", "paid", "cancelled", "rejected"]


@hookimpl
def extend_entities(extend):
    extend(
        "ExpoBooking",
        {
            "status": {"type": "enum", "choices": STATES, "labels": {"zh": "状态"}},
            "account_manager": {"type": "ref", "to": "User", "reverse": "managed_bookings"},
            "paid_at": {"type": "datetime"},
        },
    )
