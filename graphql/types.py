"""GraphQL types generated from entity metadata: one description, every type.

For each entity: the object type, its filter and order inputs, create and update
inputs, and its connection. Classes are made with ``type(...)`` and decorated by
strawberry; refs between entities are plain class objects, so every class of a schema is
created before any is decorated.
"""

from __future__ import annotations

import datetime
import decimal
import enum
from dataclasses import dataclass
from typing import Any, Optional

import strawberry
from strawberry.scalars import JSON
from strawberry.types.unset import UNSET

from guanxi.engine.metadata import EntitySpec


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# -- shared scalar-ish types -----------------------------------------------------------------
@strawberry.enum(description="Sort direction.")
class SortDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.type(description="An amount of money in an ISO 4217 currency.")
class Money:
    amount: decimal.Decimal
    currency: str


@strawberry.input(description="An amount; the currency defaults to the installation's.")
class MoneyInput:
    amount: decimal.Decimal
    currency: Optional[str] = None  # noqa: UP045 - strawberry reads the annotation


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: Optional[str]  # noqa: UP045


#: Filter operators: GraphQL name -> python attribute name.
OPERATORS = {
    "eq": "eq",
    "ne": "ne",
    "in": "in_",
    "notIn": "not_in",
    "lt": "lt",
    "lte": "lte",
    "gt": "gt",
    "gte": "gte",
    "contains": "contains",
    "icontains": "icontains",
    "startsWith": "starts_with",
    "isNull": "is_null",
}
COMPARE = ("eq", "ne", "in", "notIn", "lt", "lte", "gt", "gte", "isNull")
TEXT = (*COMPARE, "contains", "icontains", "startsWith")


def _operator_input(name: str, scalar: Any, ops: tuple[str, ...]) -> type:
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for op in ops:
        attr = OPERATORS[op]
        if op == "isNull":
            annotations[attr] = Optional[bool]  # noqa: UP045
        elif op in ("in", "notIn"):
            annotations[attr] = Optional[list[scalar]]  # noqa: UP045
        else:
            annotations[attr] = Optional[scalar]  # noqa: UP045
        namespace[attr] = strawberry.field(default=UNSET, name=op)
    namespace["__annotations__"] = annotations
    return strawberry.input(type(name, (), namespace), name=name)


StringFilter = _operator_input("StringFilter", str, TEXT)
IntFilter = _operator_input("IntFilter", int, COMPARE)
FloatFilter = _operator_input("FloatFilter", float, COMPARE)
DecimalFilter = _operator_input("DecimalFilter", decimal.Decimal, COMPARE)
DateFilter = _operator_input("DateFilter", datetime.date, COMPARE)
DateTimeFilter = _operator_input("DateTimeFilter", datetime.datetime, COMPARE)
BooleanFilter = _operator_input("BooleanFilter", bool, ("eq", "ne", "isNull"))
IDFilter = _operator_input("IDFilter", strawberry.ID, COMPARE)
JSONFilter = _operator_input("JSONFilter", bool, ("isNull",))

_money_ops = {
    "__annotations__": {
        **{
            OPERATORS[op]: Optional[decimal.Decimal]  # noqa: UP045
            for op in COMPARE
            if op  # noqa: UP045
            not in ("in", "notIn", "isNull")
        },
        "in_": Optional[list[decimal.Decimal]],  # noqa: UP045
        "not_in": Optional[list[decimal.Decimal]],  # noqa: UP045
        "is_null": Optional[bool],  # noqa: UP045
        "currency": Optional[StringFilter],  # type: ignore[valid-type]  # noqa: UP045
    },
    **{OPERATORS[op]: strawberry.field(default=UNSET, name=op) for op in COMPARE},
    "currency": strawberry.field(default=UNSET),
}
MoneyFilter = strawberry.input(type("MoneyFilter", (), _money_ops), name="MoneyFilter")

SCALARS: dict[str, Any] = {
    "string": str,
    "text": str,
    "email": str,
    "phone": str,
    "enum": str,
    "int": int,
    "float": float,
    "decimal": decimal.Decimal,
    "bool": bool,
    "date": datetime.date,
    "datetime": datetime.datetime,
    "json": JSON,
}
FILTERS: dict[str, Any] = {
    "string": StringFilter,
    "text": StringFilter,
    "email": StringFilter,
    "phone": StringFilter,
    "enum": StringFilter,
    "int": IntFilter,
    "float": FloatFilter,
    "decimal": DecimalFilter,
    "money": MoneyFilter,
    "bool": BooleanFilter,
    "date": DateFilter,
    "datetime": DateTimeFilter,
    "json": JSONFilter,
}
BASE_OUTPUT: dict[str, Any] = {
    "id": strawberry.ID,
    "created_at": datetime.datetime,
    "updated_at": datetime.datetime,
    "created_by": Optional[strawberry.ID],  # noqa: UP045
    "version": int,
    "deleted_at": Optional[datetime.datetime],  # noqa: UP045
}
BASE_FILTER: dict[str, Any] = {
    "id": IDFilter,
    "created_at": DateTimeFilter,
    "updated_at": DateTimeFilter,
    "created_by": IDFilter,
    "version": IntFilter,
}
ORDERABLE = (
    "string",
    "text",
    "email",
    "phone",
    "enum",
    "int",
    "float",
    "decimal",
    "money",
    "bool",
    "date",
    "datetime",
)


@dataclass
class EntityTypes:
    """Every generated type of one entity."""

    spec: EntitySpec
    object: type
    filter: type
    order: type
    create: type
    update: type
    connection: type
    edge: type
    #: for part entities: the input used nested in the parent (without the parent ref)
    part_input: type | None = None


def convert_filter(value: Any) -> Any:
    """A strawberry filter input instance -> the engine's plain filter data."""
    if value is None or value is UNSET:
        return None
    if isinstance(value, list):
        return [convert_filter(v) for v in value]
    definition = getattr(value, "__strawberry_definition__", None)
    if definition is None:
        if isinstance(value, enum.Enum):
            return value.value
        return value
    out: dict[str, Any] = {}
    for f in definition.fields:
        item = getattr(value, f.python_name)
        if item is UNSET:
            continue
        key = f.graphql_name or f.python_name
        if key in OPERATORS or key in ("and", "or", "not", "deleted", "currency"):
            out[key] = convert_filter(item)
        else:
            out[f.python_name] = convert_filter(item)
    return out
