"""Per-entity GraphQL types and fields, generated from the metadata.

:func:`entity_types` makes every class of every entity first and decorates them after,
so refs between entities (and self-refs) are plain class objects. The resolvers are thin:
they call the record API and the workflow runtime through the request context.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import strawberry
from strawberry.scalars import JSON
from strawberry.types.nodes import SelectedField
from strawberry.types.unset import UNSET

from guanxi.engine import LimitExceeded, Record
from guanxi.engine.metadata import OWNER_ENTITY, EntityRegistry, EntitySpec, FieldSpec

from .context import Context, in_thread
from .errors import camel_reasons
from .members import members_field, shares_records
from .types import (
    BASE_FILTER,
    BASE_OUTPUT,
    FILTERS,
    ORDERABLE,
    SCALARS,
    EntityTypes,
    Money,
    MoneyInput,
    PageInfo,
    SortDirection,
    convert_filter,
)

NESTED_PAGE = 50


@strawberry.type(description="A trigger from the record's current state.")
class AvailableTransition:
    trigger: str
    label: str
    dest: str
    allowed: bool
    reasons: list[str]


@strawberry.type(description="Who did something.")
class ActorRef:
    id: Optional[strawberry.ID]  # noqa: UP045
    username: str


@strawberry.type(description="One step of a record through its workflow.")
class WorkflowEvent:
    trigger: Optional[str]  # noqa: UP045
    from_state: Optional[str]  # noqa: UP045
    to_state: str
    actor: ActorRef
    at: datetime.datetime
    payload: Optional[JSON]  # noqa: UP045


def workflow_event(event: dict[str, Any]) -> WorkflowEvent:
    at = event["at"]
    return WorkflowEvent(
        trigger=event["trigger"],
        from_state=event["from_state"],
        to_state=event["to_state"],
        actor=ActorRef(
            id=strawberry.ID(str(event["actor_id"])) if event["actor_id"] else None,
            username=event["actor"],
        ),
        at=at if isinstance(at, datetime.datetime) else datetime.datetime.fromisoformat(at),
        payload=event["payload"],
    )


def convert_order(order_by: Any) -> list[dict[str, str]] | None:
    if not order_by:
        return None
    out = []
    for item in order_by:
        chosen = {
            f.python_name: getattr(item, f.python_name).value
            for f in item.__strawberry_definition__.fields
            if getattr(item, f.python_name) not in (None, UNSET)
        }
        out.append(chosen)
    return out


def page_size(first: int | None, cap: int) -> int:
    if first is None:
        return min(NESTED_PAGE, cap)
    if first < 0 or first > cap:
        raise LimitExceeded(f"first must be between 0 and {cap}")
    return first


#: The fields of a connection answered without loading its records.
COUNT_FIELDS = frozenset({"totalCount", "__typename"})


def _selected(info: strawberry.Info) -> frozenset[str] | None:
    """The names selected on the connection being resolved, or None when a fragment
    selects some (not looked into: it may ask for anything)."""
    names: set[str] = set()
    for selected in info.selected_fields:
        for item in selected.selections:
            if not isinstance(item, SelectedField):
                return None
            names.add(item.name)
    return frozenset(names)


def counts_only(info: strawberry.Info) -> bool:
    """Whether the connection is asked for its ``totalCount`` alone (a badge's number):
    then none of its records is loaded."""
    names = _selected(info)
    return names is not None and names <= COUNT_FIELDS


def counts_asked(info: strawberry.Info) -> bool:
    """Whether the connection may need its ``totalCount``: without it no COUNT is run."""
    names = _selected(info)
    return names is None or "totalCount" in names


def _opt(annotation: Any) -> Any:
    return Optional[annotation]  # noqa: UP045


def _value_annotation(f: FieldSpec) -> Any:
    return _opt(Money if f.type == "money" else SCALARS[f.type])


def entity_types(registry: EntityRegistry, workflows: dict[str, Any]) -> dict[str, EntityTypes]:
    """Every generated type of every entity, decorated and ready for the schema."""
    specs = [spec for spec in registry]
    shells: dict[str, dict[str, type]] = {}
    for spec in specs:
        n = spec.name
        shells[n] = {
            kind: type(f"{n}{suffix}", (), {})
            for kind, suffix in (
                ("object", ""),
                ("filter", "Filter"),
                ("order", "OrderBy"),
                ("create", "CreateInput"),
                ("update", "UpdateInput"),
                ("connection", "Connection"),
                ("edge", "Edge"),
                ("part", "PartInput"),
            )
        }
    bound = {wf.entity: wf for wf in workflows.values()}
    out: dict[str, EntityTypes] = {}
    for spec in specs:
        s = shells[spec.name]
        _fill_filter(spec, s["filter"], shells)
        _fill_order(spec, s["order"])
        parts = _parts(registry, spec)
        state_field = bound[spec.name].field if spec.name in bound else None
        _fill_input(
            spec,
            s["create"],
            update=False,
            parts=parts,
            shells=shells,
            skip={state_field} if state_field else set(),
        )
        _fill_input(
            spec,
            s["update"],
            update=True,
            parts=parts,
            shells=shells,
            skip={state_field} if state_field else set(),
        )
        if spec.parent:
            _fill_input(
                spec,
                s["part"],
                update=False,
                parts={},
                shells=shells,
                skip={spec.parent, *({state_field} if state_field else set())},
            )
        _fill_object(registry, spec, s["object"], shells, state_field is not None)
        edge = s["edge"]
        edge.__annotations__ = {"cursor": str, "node": s["object"]}
        strawberry.type(edge, name=f"{spec.name}Edge")
        conn = s["connection"]
        conn.__annotations__ = {
            "total_count": int,
            "page_info": PageInfo,
            "edges": list[edge],
            "nodes": list[s["object"]],
        }
        strawberry.type(conn, name=f"{spec.name}Connection")
        out[spec.name] = EntityTypes(
            spec=spec,
            object=s["object"],
            filter=s["filter"],
            order=s["order"],
            create=s["create"],
            update=s["update"],
            connection=conn,
            edge=edge,
            part_input=s["part"] if spec.parent else None,
        )
    return out


def _parts(registry: EntityRegistry, spec: EntitySpec) -> dict[str, EntitySpec]:
    return {
        rname: registry[rev.source]
        for rname, rev in spec.reverses.items()
        if registry[rev.source].parent == rev.field
    }


def _fill_filter(spec: EntitySpec, cls: type, shells: dict[str, dict[str, type]]) -> None:
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for name, ftype in BASE_FILTER.items():
        annotations[name] = _opt(ftype)
        namespace[name] = strawberry.field(default=UNSET)
    for f in spec:
        if f.internal:
            continue
        if f.type == "ref":
            annotations[f.name] = _opt(shells[f.to]["filter"])  # type: ignore[index]
        else:
            annotations[f.name] = _opt(FILTERS[f.type])
        namespace[f.name] = strawberry.field(default=UNSET)
    annotations.update(
        {"and_": _opt(list[cls]), "or_": _opt(list[cls]), "not_": _opt(cls), "deleted": _opt(bool)}
    )
    namespace.update(
        {
            "and_": strawberry.field(default=UNSET, name="and"),
            "or_": strawberry.field(default=UNSET, name="or"),
            "not_": strawberry.field(default=UNSET, name="not"),
            "deleted": strawberry.field(
                default=UNSET, description="true: only records in the recycle bin (admins)."
            ),
        }
    )
    for key, value in {**namespace, "__annotations__": annotations}.items():
        setattr(cls, key, value)
    strawberry.input(cls, name=f"{spec.name}Filter")


def _fill_order(spec: EntitySpec, cls: type) -> None:
    names = ["id", "created_at", "updated_at"] + [
        f.name for f in spec if f.type in ORDERABLE and not f.internal
    ]
    cls.__annotations__ = {name: _opt(SortDirection) for name in names}
    for name in names:
        setattr(cls, name, strawberry.field(default=UNSET))
    strawberry.input(
        cls, name=f"{spec.name}OrderBy", description="Exactly one field per item: {amount: DESC}."
    )


def _fill_input(
    spec: EntitySpec,
    cls: type,
    *,
    update: bool,
    parts: dict[str, EntitySpec],
    shells: dict[str, dict[str, type]],
    skip: set[str],
) -> None:
    annotations: dict[str, Any] = {}
    for f in spec:
        if f.readonly or f.internal or f.name in skip:
            continue
        required = f.required and f.default is None and not update
        if f.type == "ref":
            name, scalar = f"{f.name}_id", strawberry.ID
        else:
            name, scalar = f.name, (MoneyInput if f.type == "money" else SCALARS[f.type])
        annotations[name] = scalar if required else _opt(scalar)
        setattr(cls, name, strawberry.field() if required else strawberry.field(default=UNSET))
    for rname, part in parts.items():
        annotations[rname] = _opt(list[shells[part.name]["part"]])
        setattr(cls, rname, strawberry.field(default=UNSET))
    kind = (
        "UpdateInput"
        if update
        else ("PartInput" if cls.__name__.endswith("PartInput") else "CreateInput")
    )
    if not annotations:  # GraphQL input types need a field
        annotations["_empty"] = _opt(bool)
        cls._empty = strawberry.field(default=UNSET, name="empty")  # type: ignore[attr-defined]
    cls.__annotations__ = annotations
    strawberry.input(cls, name=f"{spec.name}{kind}")


def input_values(registry: EntityRegistry, spec: EntitySpec, value: Any) -> dict[str, Any]:
    """An input instance -> the record API's field data (unset fields left out); parts
    given under their reverse names are converted recursively."""
    out: dict[str, Any] = {}
    for f in value.__strawberry_definition__.fields:
        item = getattr(value, f.python_name)
        if item is UNSET or f.python_name == "_empty":
            continue
        name = f.python_name
        field_spec = spec.fields.get(name[:-3]) if name.endswith("_id") else None
        if field_spec is not None and field_spec.type == "ref":
            name = field_spec.name
            item = int(item) if item is not None and str(item).isdigit() else item
        elif isinstance(item, MoneyInput):
            item = {"amount": item.amount, "currency": item.currency}
        elif name in spec.reverses and isinstance(item, list):
            part = registry[spec.reverses[name].source]
            item = [input_values(registry, part, v) for v in item]
        out[name] = item
    return out


def _fill_object(
    registry: EntityRegistry,
    spec: EntitySpec,
    cls: type,
    shells: dict[str, dict[str, type]],
    has_workflow: bool,
) -> None:
    annotations: dict[str, Any] = dict(BASE_OUTPUT)
    for f in spec:
        if f.internal:
            continue
        if f.type == "ref":
            target = shells[f.to]["object"]  # type: ignore[index]
            setattr(cls, f.name, strawberry.field(resolver=_ref_resolver(f, target)))
            setattr(cls, f"{f.name}_id", strawberry.field(resolver=_ref_id_resolver(f)))
        else:
            annotations[f.name] = _value_annotation(f)
    for rname, rev in spec.reverses.items():
        source = shells[rev.source]
        setattr(
            cls,
            rname,
            strawberry.field(
                resolver=_reverse_resolver(spec.name, rname, source),
                description=f"{rev.source} records whose {rev.field} is this record.",
            ),
        )
    if shares_records(spec):
        cls.members = members_field(spec, shells[OWNER_ENTITY]["object"])
    if has_workflow:
        cls.available_transitions = strawberry.field(resolver=_available_resolver(spec))
        cls.history = strawberry.field(resolver=_history_resolver(spec))
    cls.__annotations__ = annotations
    strawberry.type(cls, name=spec.name, description=spec.label)


def _ref_resolver(f: FieldSpec, target: type) -> Any:
    async def resolve(root: Record, info: strawberry.Info) -> Any:
        value = root[f.name]
        if value is None:
            return None
        return await info.context.record_loader(f.to).load(value)

    resolve.__annotations__ = {"root": Any, "info": strawberry.Info, "return": _opt(target)}
    resolve.__name__ = f.name
    return resolve


def _ref_id_resolver(f: FieldSpec) -> Any:
    def resolve(root: Record) -> Any:
        value = root[f.name]
        return strawberry.ID(str(value)) if value is not None else None

    resolve.__annotations__ = {"root": Any, "return": _opt(strawberry.ID)}
    resolve.__name__ = f"{f.name}_id"
    return resolve


def _reverse_resolver(entity: str, rname: str, source: dict[str, type]) -> Any:
    conn, edge, order_type = source["connection"], source["edge"], source["order"]

    async def resolve(
        root: Record,
        info: strawberry.Info,
        filter: Any = None,
        order_by: Any = None,
        first: Any = None,
    ) -> Any:
        size = page_size(first, NESTED_PAGE)
        if counts_only(info):
            size = 0
        ctx: Context = info.context
        total, records = await ctx.reverse_loader(
            entity, rname, convert_filter(filter), convert_order(order_by), size
        ).load(root["id"])
        return conn(
            total_count=total,
            page_info=PageInfo(has_next_page=total > len(records), end_cursor=None),
            edges=[edge(cursor="", node=r) for r in records],
            nodes=records,
        )

    resolve.__annotations__ = {
        "root": Any,
        "info": strawberry.Info,
        "filter": _opt(source["filter"]),
        "order_by": _opt(list[order_type]),
        "first": _opt(int),
        "return": conn,
    }
    resolve.__name__ = rname
    return resolve


def _available_resolver(spec: EntitySpec) -> Any:
    async def resolve(root: Record, info: strawberry.Info) -> list[AvailableTransition]:
        ctx: Context = info.context
        actor = ctx.require_actor()
        runtime = ctx.engine.runtime
        found = await in_thread(lambda: runtime.available_transitions(spec.name, root["id"], actor))
        # the runtime gives the English label; its definition has the translations
        transitions = runtime.workflow_for(spec.name).transitions
        defined = {(t.trigger, t.dest, t.label): t for t in transitions}
        return [
            AvailableTransition(
                trigger=t.trigger,
                label=ctx.label(defined.get((t.trigger, t.dest, t.label), t)),
                dest=t.dest,
                allowed=t.allowed,
                reasons=camel_reasons(list(t.reasons)),
            )
            for t in found
        ]

    resolve.__name__ = "available_transitions"
    return resolve


def _history_resolver(spec: EntitySpec) -> Any:
    async def resolve(root: Record, info: strawberry.Info) -> list[WorkflowEvent]:
        ctx: Context = info.context
        actor = ctx.require_actor()
        events = await in_thread(
            lambda: ctx.engine.runtime.history(spec.name, root["id"], actor=actor)
        )
        return [workflow_event(e) for e in events]

    resolve.__name__ = "history"
    return resolve
