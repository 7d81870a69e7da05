"""Sales: customers and contacts, the sales pipeline, quotes, contracts, orders, payments.

Contributes the sales entities (``entities.py``), the business roles the sources name for
sales work (``roles.py``), the actions and conditions the ``sales_pipeline`` workflow uses
(``pipeline.py``; the workflow itself ships in guanxi's top-level ``workflows/``) and the
write hooks that keep computed values (``computed.py``). Everything goes through the
public plugin surface: ``guanxi.engine`` and the hooks of ``guanxi.engine.hookspecs``.
"""

from guanxi.engine import hookimpl

from . import computed
from .entities import ENTITIES
from .pipeline import ACTIONS, CONDITIONS
from .roles import ROLES

name = "sales"
requires: tuple[str, ...] = ()


@hookimpl
def register_entities(register):
    for description in ENTITIES:
        register(description)


@hookimpl
def register_roles(register):
    for role, definition in ROLES.items():
        register(role, definition)


@hookimpl
def register_actions(register):
    for action, (function, params) in ACTIONS.items():
        register(action, function, params=params)


@hookimpl
def register_conditions(register):
    for condition, (function, params) in CONDITIONS.items():
        register(condition, function, params=params)


@hookimpl
def before_commit(engine, event):
    return computed.before_commit(engine, event)


@hookimpl
def record_written(engine, event):
    computed.record_written(engine, event)
