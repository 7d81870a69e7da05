"""Assembling the one GraphQL schema at start-up.

Core fields (session, metadata, inbox, workflows) + the CRUD fields generated for every
entity + what plugins contribute through ``register_graphql``. A name contributed twice
is an error naming both contributors (strawberry's ``merge_types`` would only warn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.scalars import JSON
from strawberry.tools import create_type

from guanxi.engine import Engine, PluginError
from guanxi.engine.plugins import call_with_origin

from .context import Context, call_engine, in_thread
from .entities import (
    WorkflowEvent,
    convert_order,
    counts_asked,
    counts_only,
    entity_types,
    input_values,
    page_size,
    workflow_event,
)
from .errors import ErrorCodes, GraphQLNames
from .inbox import inbox_fields
from .limits import Limits
from .members import member_mutations
from .merge import merge_fields
from .metadata import Metadata, build_metadata
from .session import current_user, login_field, logout_field, set_password_field
from .transfer import transfer_fields
from .types import EntityTypes, PageInfo, camel, convert_filter


class QuietSchema(strawberry.Schema):
    """Strawberry logs every error with a traceback; ErrorCodes logs the unexpected ones
    (with their error id), and a user's bad input is not a server problem."""

    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        return None


@strawberry.type(description="What a fired transition did.")
class TransitionResult:
    state: str
    previous_state: str
    event: WorkflowEvent


@dataclass
class Contribution:
    name: str
    field: Any
    origin: str


class SchemaBuilder:
    """Collects the schema's root fields; plugins get it through ``register_graphql``.

    A plugin calls ``schema.query(name, strawberry.field(resolver=...))``,
    ``schema.mutation(name, field)``, ``schema.analytics(name, cls)``,
    ``schema.extend("Customer", "timeline", field)`` and reads generated types with
    ``schema.entity("Customer").object``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.entities: dict[str, EntityTypes] = entity_types(engine.registry, engine.workflows)
        self.queries: dict[str, Contribution] = {}
        self.mutations: dict[str, Contribution] = {}
        self.analytics_types: dict[str, Contribution] = {}
        self._extended: dict[tuple[str, str], str] = {}
        self._origin = "engine"

    # -- the plugin API --------------------------------------------------------------------
    def entity(self, name: str) -> EntityTypes:
        return self.entities[name]

    def query(self, name: str, field: Any) -> None:
        self._add(self.queries, "query field", name, field)

    def mutation(self, name: str, field: Any) -> None:
        self._add(self.mutations, "mutation", name, field)

    def analytics(self, name: str, cls: type) -> None:
        """``analytics { <name> { ... } }``: an object type whose fields are figures."""
        self._add_analytics(name, cls)

    def extend(self, entity: str, name: str, field: Any) -> None:
        """Add a field to the generated object type of ``entity`` (``Customer.timeline``).

        ``field`` is a ``strawberry.field(resolver=...)``; the resolver receives the
        record as its ``root`` argument. A name the type already has stops start-up.
        """
        self._extend(entity, name, field, self._origin)

    def for_plugin(self, plugin: str) -> SchemaBuilder:
        view = _PluginView(self, f"plugin {plugin}")
        return view  # type: ignore[return-value]

    def _add(
        self,
        table: dict[str, Contribution],
        kind: str,
        name: str,
        field: Any,
        origin: str | None = None,
    ) -> None:
        origin = origin or self._origin
        if name in table:
            raise PluginError(
                f"GraphQL {kind} {camel(name)!r} is contributed twice: by {table[name].origin} "
                f"and by {origin}"
            )
        table[name] = Contribution(name, field, origin)

    def _extend(self, entity: str, name: str, field: Any, origin: str) -> None:
        if entity not in self.entities:
            raise PluginError(
                f"cannot add field {camel(name)!r} to {entity!r}: there is no such entity",
                where=origin,
            )
        definition = self.entities[entity].object.__strawberry_definition__
        taken = {f.python_name: f for f in definition.fields}
        if name in taken:
            earlier = self._extended.get((entity, name), "the generated type")
            raise PluginError(
                f"GraphQL field {entity}.{camel(name)} is contributed twice: by {earlier} "
                f"and by {origin}",
                where=origin,
            )
        field.python_name = name
        field.graphql_name = None
        field.origin = self.entities[entity].object
        definition.fields.append(field)
        self._extended[(entity, name)] = origin

    def _add_analytics(self, name: str, cls: Any, origin: str | None = None) -> None:
        _check_analytics(name, cls, origin or self._origin)
        self._add(self.analytics_types, "analytics object", name, cls, origin)

    # -- assembly ----------------------------------------------------------------------------
    def build(self, limits: Limits, extra_extensions: list[Any]) -> strawberry.Schema:
        self._core_fields()
        self._entity_fields()
        call_with_origin(
            self.engine.pm,
            "register_graphql",
            lambda plugin: self.for_plugin(plugin),
            argument="schema",
        )
        for item in self.engine.analytics:  # register_analytics(register) contributions
            self._add_analytics(item.name, item.value, item.origin)
        if self.analytics_types:
            self._analytics_root()
        query = create_type("Query", [self._named(c) for c in self.queries.values()])
        mutation = create_type("Mutation", [self._named(c) for c in self.mutations.values()])
        names = GraphQLNames(self.engine.registry)
        # Factories, not instances: an extension holds the request it is working on.
        extensions: list[Any] = [
            *extra_extensions,
            lambda: ErrorCodes(suggestions=limits.introspection, names=names),
            lambda: QueryDepthLimiter(max_depth=limits.max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            # the caches behind these are shared per size, so a factory keeps them warm
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
        ]
        if not limits.introspection:
            extensions.append(DisableIntrospection)
        return QuietSchema(query=query, mutation=mutation, extensions=extensions)

    @staticmethod
    def _named(c: Contribution) -> Any:
        c.field.python_name = c.name
        c.field.graphql_name = None
        return c.field

    def _core_fields(self) -> None:
        user = self.entities["User"].object
        self.query("me", strawberry.field(resolver=current_user(user)))
        self.query("metadata", strawberry.field(resolver=build_metadata))
        self.mutation("login", login_field(user))
        self.mutation("logout", logout_field())
        for name, field in inbox_fields().items():
            (self.mutation if name.startswith("mark") else self.query)(name, field)
        self.mutation("set_password", set_password_field())
        for name, field in member_mutations(user).items():
            self.mutation(name, field)
        self.mutation("fire_transition", strawberry.field(resolver=_fire_transition))
        for name, field in merge_fields().items():
            (self.mutation if name == "merge_records" else self.query)(name, field)
        for name, field in transfer_fields().items():
            self.mutation(name, field)

    def _entity_fields(self) -> None:
        for types in self.entities.values():
            spec = types.spec
            self.query(
                spec.table,
                strawberry.field(
                    resolver=_get_resolver(types), description=f"One {spec.label} by id."
                ),
            )
            self.query(
                spec.plural,
                strawberry.field(
                    resolver=_list_resolver(self.engine, types),
                    description=f"{spec.label} records.",
                ),
            )
            self.mutation(
                f"create_{spec.table}",
                strawberry.field(resolver=_create_resolver(self.engine, types)),
            )
            self.mutation(
                f"update_{spec.table}",
                strawberry.field(resolver=_update_resolver(self.engine, types)),
            )
            self.mutation(
                f"delete_{spec.table}", strawberry.field(resolver=_delete_resolver(types))
            )
            self.mutation(
                f"restore_{spec.table}", strawberry.field(resolver=_restore_resolver(types))
            )

    def _analytics_root(self) -> None:
        fields = []
        for name, c in self.analytics_types.items():
            cls = c.field
            fields.append(_analytics_field(name, cls))
        analytics = create_type("Analytics", fields, description="Figures, by plugin.")

        def resolve(info: strawberry.Info) -> Any:
            info.context.require_actor()
            return analytics()

        resolve.__annotations__ = {"info": strawberry.Info, "return": analytics}
        self.query("analytics", strawberry.field(resolver=resolve))


class _PluginView:
    """The builder as one plugin sees it: every contribution carries the plugin's name."""

    def __init__(self, builder: SchemaBuilder, origin: str) -> None:
        self._builder = builder
        self._origin = origin

    def entity(self, name: str) -> EntityTypes:
        return self._builder.entity(name)

    def query(self, name: str, field: Any) -> None:
        self._builder._add(self._builder.queries, "query field", name, field, self._origin)

    def mutation(self, name: str, field: Any) -> None:
        self._builder._add(self._builder.mutations, "mutation", name, field, self._origin)

    def analytics(self, name: str, cls: type) -> None:
        self._builder._add_analytics(name, cls, self._origin)

    def extend(self, entity: str, name: str, field: Any) -> None:
        self._builder._extend(entity, name, field, self._origin)


def _check_analytics(name: str, value: Any, origin: str) -> None:
    """An analytics contribution must be a strawberry object type, passed as the class: the
    API builds one per request, so an instance (or anything else) would never be served."""
    if isinstance(value, type) and hasattr(value, "__strawberry_definition__"):
        return
    if isinstance(value, type):
        problem = f"{value.__name__} is not a strawberry type; decorate it with @strawberry.type"
    elif hasattr(type(value), "__strawberry_definition__"):
        cls = type(value).__name__
        problem = f"pass the class, not an instance: register({name!r}, {cls})"
    else:
        problem = f"expected a @strawberry.type class, got {value!r}"
    raise PluginError(f"analytics {name!r}: {problem}", where=origin)


def _analytics_field(name: str, cls: type) -> Any:
    def resolve() -> Any:
        return cls()

    resolve.__annotations__ = {"return": cls}
    field = strawberry.field(resolver=resolve)
    field.python_name = name
    return field


# -- entity resolvers ------------------------------------------------------------------------
def _opt(annotation: Any) -> Any:
    return Optional[annotation]  # noqa: UP045


def _connection(types: EntityTypes, page: Any) -> Any:
    return types.connection(
        total_count=page.total_count,
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        edges=[
            types.edge(cursor=c, node=r) for c, r in zip(page.cursors, page.records, strict=True)
        ],
        nodes=list(page.records),
    )


def _get_resolver(types: EntityTypes) -> Callable[..., Any]:
    entity = types.spec.name

    async def resolve(info: strawberry.Info, id: strawberry.ID) -> Any:
        ctx: Context = info.context
        ctx.require_actor()
        if not str(id).isdigit():
            return None
        return await ctx.record_loader(entity).load(int(id))

    resolve.__annotations__ = {
        "info": strawberry.Info,
        "id": strawberry.ID,
        "return": _opt(types.object),
    }
    return resolve


def _list_resolver(engine: Engine, types: EntityTypes) -> Callable[..., Any]:
    entity = types.spec.name

    async def resolve(
        info: strawberry.Info,
        filter: Any = None,
        order_by: Any = None,
        first: Any = None,
        after: Any = None,
    ) -> Any:
        ctx: Context = info.context
        actor = ctx.require_actor()
        size = page_size(
            first if first is not None else engine.config.page_size_default,
            engine.config.page_size_max,
        )
        if counts_only(info):
            size = 0
        page = await in_thread(
            lambda: engine.records.list(
                entity,
                actor=actor,
                filter=convert_filter(filter),
                order_by=convert_order(order_by),
                first=size,
                after=after,
                count=counts_asked(info),
            )
        )
        return _connection(types, page)

    resolve.__annotations__ = {
        "info": strawberry.Info,
        "filter": _opt(types.filter),
        "order_by": _opt(list[types.order]),
        "first": _opt(int),
        "after": _opt(str),
        "return": types.connection,
    }
    return resolve


def _create_resolver(engine: Engine, types: EntityTypes) -> Callable[..., Any]:
    spec = types.spec

    async def resolve(
        info: strawberry.Info,
        input: Any,
        idempotency_key: Any = None,
        allow_duplicate: Any = False,
    ) -> Any:
        ctx: Context = info.context
        actor = ctx.require_actor()
        data = input_values(engine.registry, spec, input)
        return await call_engine(
            lambda: engine.idempotency.create(
                spec.name,
                data,
                actor=actor,
                key=idempotency_key,
                allow_duplicate=bool(allow_duplicate),
            )
        )

    resolve.__annotations__ = {
        "info": strawberry.Info,
        "input": types.create,
        "idempotency_key": _opt(str),
        "allow_duplicate": _opt(bool),
        "return": types.object,
    }
    return resolve


def _update_resolver(engine: Engine, types: EntityTypes) -> Callable[..., Any]:
    spec = types.spec

    async def resolve(
        info: strawberry.Info,
        id: strawberry.ID,
        input: Any,
        version: Any = None,
        allow_duplicate: Any = False,
    ) -> Any:
        ctx: Context = info.context
        actor = ctx.require_actor()
        data = input_values(engine.registry, spec, input)
        return await call_engine(
            lambda: engine.records.update(
                spec.name,
                id,
                data,
                actor=actor,
                expected_version=version,
                allow_duplicate=bool(allow_duplicate),
            )
        )

    resolve.__annotations__ = {
        "info": strawberry.Info,
        "id": strawberry.ID,
        "input": types.update,
        "version": _opt(int),
        "allow_duplicate": _opt(bool),
        "return": types.object,
    }
    return resolve


def _delete_resolver(types: EntityTypes) -> Callable[..., Any]:
    entity = types.spec.name

    async def resolve(info: strawberry.Info, id: strawberry.ID) -> bool:
        ctx: Context = info.context
        actor = ctx.require_actor()
        await call_engine(lambda: ctx.engine.records.delete(entity, id, actor=actor))
        return True

    return resolve


def _restore_resolver(types: EntityTypes) -> Callable[..., Any]:
    entity = types.spec.name

    async def resolve(info: strawberry.Info, id: strawberry.ID) -> Any:
        ctx: Context = info.context
        actor = ctx.require_actor()
        return await call_engine(lambda: ctx.engine.records.restore(entity, id, actor=actor))

    resolve.__annotations__ = {"info": strawberry.Info, "id": strawberry.ID, "return": types.object}
    return resolve


async def _fire_transition(
    info: strawberry.Info,
    entity: str,
    id: strawberry.ID,
    trigger: str,
    payload: Optional[JSON] = None,  # noqa: UP045
    version: Optional[int] = None,  # noqa: UP045
    idempotency_key: Optional[str] = None,  # noqa: UP045
) -> TransitionResult:
    """Fire a workflow transition on one record (one transaction)."""
    ctx: Context = info.context
    actor = ctx.require_actor()
    result = await call_engine(
        lambda: ctx.engine.runtime.fire_transition(
            entity,
            id,
            trigger,
            actor,
            payload=payload,
            expected_version=version,
            idempotency_key=idempotency_key,
        )
    )
    event = dict(result.event)
    event["payload"] = ctx.engine.runtime.visible_payload(entity, trigger, event["payload"], actor)
    return TransitionResult(
        state=result.state, previous_state=result.previous_state, event=workflow_event(event)
    )


def build_schema(
    engine: Engine, limits: Limits | None = None, extra_extensions: list[Any] | None = None
) -> strawberry.Schema:
    """The schema of an engine (built once at start-up)."""
    return SchemaBuilder(engine).build(limits or Limits.from_env(), extra_extensions or [])


__all__ = ["Metadata", "SchemaBuilder", "TransitionResult", "build_schema"]
