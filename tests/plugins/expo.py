"""A small fake plugin: trade fairs, booth bookings and priced quotes with lines.

It implements every hook so tests can check each is called; ``CALLS`` records them.
"""

from __future__ import annotations

from decimal import Decimal

from guanxi.engine import hookimpl

name = "expo"
CALLS: list[str] = []
EVENTS: list[tuple[str, str, int]] = []


@hookimpl
def register_entities(register):
    CALLS.append("register_entities")
    register(
        {
            "name": "Fair",
            "label": "Trade fair",
            "labels": {"zh": "糖酒会"},
            "natural_key": "name",
            "fields": {
                "name": {"type": "string", "required": True, "unique": True, "max_length": 120},
                "season": {"type": "enum", "choices": ["spring", "autumn"]},
            },
        }
    )
    register(
        {
            "name": "ExpoBooking",
            "label": "Expo booking",
            "labels": {"zh": "展位预订"},
            "owned": True,
            "fields": {
                "title": {"type": "string", "required": True, "max_length": 200},
                "booth_m2": {"type": "decimal", "min": 0},
                "fair": {"type": "ref", "to": "Fair", "required": True},
                "cancel_reason": {"type": "string", "max_length": 200},
                "fee": {"type": "money"},
                "contact_email": {"type": "email"},
                "contact_phone": {"type": "phone"},
                "starts_on": {"type": "date"},
                "confirmed": {"type": "bool", "default": False},
                "notes": {"type": "text"},
                "extra": {"type": "json"},
                "rank": {"type": "int", "min": 1, "max": 5},
                "ratio": {"type": "float"},
                "hall": {"type": "string", "indexed": True, "max_length": 20},
                "arrives_at": {"type": "datetime"},
            },
        }
    )
    register(
        {
            "name": "Quote",
            "fields": {
                "title": {"type": "string", "required": True},
                "total": {"type": "decimal", "readonly": True},
            },
        }
    )
    register(
        {
            "name": "QuoteLine",
            "parent": "quote",
            "fields": {
                "quote": {"type": "ref", "to": "Quote", "required": True, "reverse": "lines"},
                "product": {"type": "string", "required": True},
                "quantity": {"type": "int", "required": True, "min": 1},
                "unit_price": {"type": "decimal", "required": True},
            },
        }
    )


@hookimpl
def extend_entities(extend):
    CALLS.append("extend_entities")
    extend("Fair", {"city": {"type": "string", "max_length": 64}})


@hookimpl
def register_roles(register):
    CALLS.append("register_roles")
    register("fair_office", {"label": "Fair office", "labels": {"zh": "会展部"}})


@hookimpl
def register_workflows(register):
    CALLS.append("register_workflows")


@hookimpl
def register_actions(register):
    CALLS.append("register_actions")


@hookimpl
def register_conditions(register):
    CALLS.append("register_conditions")


@hookimpl
def register_graphql(schema):
    CALLS.append("register_graphql")


@hookimpl
def register_analytics(register):
    CALLS.append("register_analytics")


@hookimpl
def register_periodic_jobs(register):
    CALLS.append("register_periodic_jobs")


@hookimpl
def register_demo_data(register):
    CALLS.append("register_demo_data")


@hookimpl
def register_commands(cli):
    CALLS.append("register_commands")


@hookimpl
def before_commit(engine, event):
    if event.entity != "Quote":
        return None
    lines = engine.records.scoped_query("QuoteLine").filter(
        "lambda x: x.quote.id == q", {}, {"q": event.record_id}
    )
    return {"total": sum((ln.unit_price * ln.quantity for ln in lines), Decimal("0"))}


@hookimpl
def record_written(engine, event):
    EVENTS.append((event.entity, event.action, event.record_id))


@hookimpl
def transition_fired(engine, event):
    CALLS.append("transition_fired")


@hookimpl
def deliver_message(engine, message):
    CALLS.append("deliver_message")
    return True


@hookimpl
def mask_values(engine, actor, entity, values):
    CALLS.append("mask_values")


@hookimpl
def masked_fields(engine, actor, entity):
    CALLS.append("masked_fields")


@hookimpl
def timeline_entries(engine, actor, entity, record_id, before, limit, language):
    CALLS.append("timeline_entries")
