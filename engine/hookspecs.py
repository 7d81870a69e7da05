"""The whole public plugin surface of guanxi.

A plugin is a module (or object) with functions decorated ``@hookimpl`` whose names match
the specs below. Shipped and third-party plugins are found the same way: through the
entry-point group ``guanxi``. Most hooks receive a ``register`` callback instead of
returning lists, so a plugin says what it contributes in the order it likes.

Besides hooks, a plugin module may set two attributes:

- ``requires: tuple[str, ...]`` - names of plugins it needs (``("sales",)``); a missing
  one stops start-up naming both.
- ``core: bool`` - an always-loaded plugin that ``GUANXI_PLUGINS`` cannot switch off
  (the GraphQL layer is one).

Every hook is documented in ``docs/plugins.md``; a test fails when one is missing there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - types only
    import click

    from .actor import Actor
    from .engine import Engine
    from .records import RecordEvent
    from .timeline import TimelineEntry, TimelineKey

hookspec = pluggy.HookspecMarker("guanxi")
hookimpl = pluggy.HookimplMarker("guanxi")

#: The attribute :func:`for_entities` sets on a hook implementation.
ENTITIES_ATTRIBUTE = "guanxi_entities"
#: The hooks called for one entity's records, which :func:`for_entities` may narrow.
ENTITY_HOOKS = frozenset({"before_commit", "record_written", "mask_values", "masked_fields"})


def for_entities(*entities: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare that a hook implementation acts on these entities' records only.

    For :data:`ENTITY_HOOKS`: the engine then calls the implementation for records of
    those entities and skips it for all others (``@for_entities("Customer", "Contact")``
    above or below ``@hookimpl``). Without it an implementation is called for every
    entity. It saves a call per record written or read - what counts when
    ``create_many`` writes a million rows - so declare it when the set is known.
    """
    if not entities or not all(isinstance(e, str) and e for e in entities):
        raise TypeError("for_entities() takes one or more entity names")

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, ENTITIES_ATTRIBUTE, frozenset(entities))
        return function

    return mark


# -- data model ---------------------------------------------------------------------------
@hookspec
def register_entities(register: Callable[[dict[str, Any]], None]) -> None:
    """Declare entities: call ``register(description)`` once per entity.

    ``description`` is the dict format of ``docs/entities.md`` (name, plural, label,
    labels, fields, owned, owner_via, parent, duplicate_keys, natural_key).
    """


@hookspec
def extend_entities(extend: Callable[[str, dict[str, Any]], None]) -> None:
    """Add fields to entities declared by others: ``extend("Customer", {"wechat": {...}})``.

    Field names must not clash with the entity's own; refs may point anywhere.
    """


@hookspec
def register_roles(register: Callable[[str, dict[str, Any]], None]) -> None:
    """Contribute roles: ``register(name, definition)`` in the ``roles.yaml`` format.

    An admin's ``$GUANXI_HOME/roles.yaml`` replaces a role of the same name.
    """


# -- workflows ----------------------------------------------------------------------------
@hookspec
def register_workflows(register: Callable[[Any], None]) -> None:
    """Contribute workflow YAML files: ``register(path)`` for each file shipped."""


@hookspec
def register_actions(register: Callable[..., None]) -> None:
    """Contribute workflow actions: ``register(name, function, params=schema)``.

    Names are namespaced by convention (``sales.create_contract``). The function receives
    an action context and its checked parameters, runs inside the transition's
    transaction and may change records only through the record API.
    """


@hookspec
def register_conditions(register: Callable[..., None]) -> None:
    """Contribute workflow conditions: ``register(name, function, params=schema)``.

    The function receives a condition context and returns True when the transition may
    proceed; it must not write.
    """


# -- API and analytics --------------------------------------------------------------------
@hookspec
def register_graphql(schema: Any) -> None:
    """Contribute GraphQL types, query fields and mutations to the schema builder.

    ``schema`` is the builder object of the GraphQL layer (see ``docs/api.md``).
    """


@hookspec
def register_analytics(register: Callable[[str, Any], None]) -> None:
    """Contribute an analytics object: ``register(plugin_name, cls)``.

    ``cls`` is a strawberry type *class* whose fields are the figures; it appears as
    ``analytics { <plugin_name> { ... } }``. Every figure must be computed through
    ``engine.records.scoped_query`` so it counts only what the caller may read.
    """


@hookspec(firstresult=True)
def asgi_app(engine: Engine) -> Any:
    """Return the ASGI application serving this engine (the GraphQL layer implements it)."""


# -- timelines ----------------------------------------------------------------------------
@hookspec
def timeline_entries(
    engine: Engine,
    actor: Actor,
    entity: str,
    record_id: int,
    before: TimelineKey | None,
    limit: int,
    language: str,
) -> list[TimelineEntry] | None:
    """Contribute entries to the timeline of one record (``Customer.timeline``).

    Return at most ``limit`` ``TimelineEntry`` values (or dicts of their fields) about
    ``entity`` #``record_id`` that ``actor`` may read, newest first, all older than
    ``before`` (a ``TimelineKey``; None for the first page) - ``guanxi.engine.timeline``'s
    ``older_than`` and ``newest_first`` build that query. Return nothing for entities you
    know nothing about. ``language`` is the caller's (``en``, ``zh``) for titles.
    """


# -- jobs, demo data, CLI -----------------------------------------------------------------
@hookspec
def register_periodic_jobs(register: Callable[..., None]) -> None:
    """Contribute periodic jobs: ``register(name, interval_seconds, function)``.

    ``function(engine, now)`` runs in the worker, claimed once per period across workers.
    """


@hookspec
def register_demo_data(register: Callable[..., None]) -> None:
    """Contribute demo data: ``register(name, function)``.

    ``function(engine, size, seed, progress)`` fills the database through the record API;
    ``size`` is ``"small"`` or ``"large"``, ``progress(done, total)`` reports progress.
    It may return rows (dicts with the same keys, e.g. the logins of people it created),
    which ``guanxi demo`` prints once as a table.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``guanxi`` command line (``@cli.command()``)."""


# -- events -------------------------------------------------------------------------------
@hookspec
def before_commit(engine: Engine, event: RecordEvent) -> dict[str, Any] | None:
    """Called inside every create or update before it is committed.

    Return a dict of field values to store as well (computed read-only fields such as
    totals), or None. Raising aborts the write.
    """


@hookspec
def record_written(engine: Engine, event: RecordEvent) -> None:
    """Called inside the transaction after a record is created, updated, deleted or
    restored. A plugin may write other records (through the record API) or raise to abort.
    """


@hookspec
def transition_fired(engine: Engine, event: Any) -> None:
    """Called inside the transaction after a workflow transition has moved a record."""


@hookspec(firstresult=True)
def deliver_message(engine: Engine, message: Any) -> bool | None:
    """Deliver one outbox message of a channel this plugin owns; return True when sent.

    Raising marks the attempt failed; it is retried with backoff.
    """


# -- reading ------------------------------------------------------------------------------
@hookspec
def mask_values(
    engine: Engine, actor: Actor, entity: str, values: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Mask values of one record as ``actor`` reads it (never the system's reads).

    ``values`` are the record's fields as the actor sees them; return ``{field: shown}``
    for the fields to show otherwise (``138****5678``), or None. Called for every record
    every read returns (get, list, nested and ref fields, write results): check
    ``entity`` first and keep it cheap. Declare the fields with :func:`masked_fields`.
    """


@hookspec
def masked_fields(engine: Engine, actor: Actor, entity: str) -> Iterable[str] | None:
    """The fields of ``entity`` that :func:`mask_values` may mask for ``actor`` (an
    iterable of names, or None). The actor cannot filter or order on them - a filter on
    an exact value would reveal what the mask hides."""
