"""A small fake plugin for the permission tests: owned accounts shared with members, notes
owned through their account, contacts that are parts of it, visits that merely refer to an
account, and unowned regions."""

from __future__ import annotations

from guanxi.engine import hookimpl

name = "scoped"


@hookimpl
def register_entities(register):
    register(
        {
            "name": "Region",
            "fields": {"name": {"type": "string", "required": True, "max_length": 60}},
        }
    )
    register(
        {
            "name": "Account",
            "owned": True,
            "members": True,
            "fields": {
                "name": {"type": "string", "required": True, "max_length": 120},
                "revenue": {"type": "decimal"},
                "region": {"type": "ref", "to": "Region"},
            },
        }
    )
    register(
        {
            "name": "AccountNote",
            "owner_via": "account",
            "fields": {
                "account": {"type": "ref", "to": "Account", "reverse": "notes"},
                "text": {"type": "text", "required": True},
            },
        }
    )
    register(
        {
            "name": "Visit",
            "fields": {
                "subject": {"type": "string", "required": True, "max_length": 120},
                "account": {"type": "ref", "to": "Account", "reverse": "visits"},
            },
        }
    )
    register(
        {
            "name": "AccountContact",
            "parent": "account",
            "fields": {
                "account": {
                    "type": "ref",
                    "to": "Account",
                    "required": True,
                    "reverse": "contacts",
                },
                "name": {"type": "string", "required": True, "max_length": 120},
            },
        }
    )
