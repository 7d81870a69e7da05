"""Sales: customers and contacts, the sales pipeline, quotes, contracts, orders, payments.

Contributes the sales entities (``entities.py``), the business roles the sources name for
sales work (``roles.py``), the actions and conditions the ``sales_pipeline`` workflow uses
(``pipeline.py``; the workflow itself ships in guanxi's top-level ``workflows/``) and the
write hooks that keep computed values (``computed.py``). Everything goes through the
public plugin surface: ``guanxi.engine`` and the hooks of ``guanxi.engine.hookspecs``.
"""

from guanxi.engine import for_entities, hookimpl

from . import computed, demo, pool, reminders, timeline
from .analytics import SalesAnalytics
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
    values = {**(computed.before_commit(engine, event) or {})}
    values.update(pool.before_commit(engine, event) or {})
    return values or None


@hookimpl
@for_entities(*sorted(computed.WRITTEN | pool.WRITTEN))
def record_written(engine, event):
    computed.record_written(engine, event)
    pool.record_written(engine, event)


@hookimpl
@for_entities(*pool.MASKED)
def mask_values(engine, actor, entity, values):
    return pool.mask_values(engine, actor, entity, values)


@hookimpl
@for_entities(*pool.MASKED)
def masked_fields(engine, actor, entity):
    return pool.masked_fields(engine, actor, entity)


#: The parts of the plugin that contribute periodic jobs, and GraphQL fields, in order.
_JOB_PARTS = (reminders, pool)
_PARTS = (reminders, pool, timeline)


@hookimpl
def register_periodic_jobs(register):
    for part in _JOB_PARTS:
        part.register_periodic_jobs(register)


@hookimpl
def register_graphql(schema):
    for part in _PARTS:
        part.register_graphql(schema)


@hookimpl
def timeline_entries(engine, actor, entity, record_id, before, limit, language):
    return timeline.timeline_entries(engine, actor, entity, record_id, before, limit, language)


@hookimpl
def register_analytics(register):
    register("sales", SalesAnalytics)


@hookimpl
def register_demo_data(register):
    register("sales", demo.demo)
