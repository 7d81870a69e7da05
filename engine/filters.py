"""List filters and orderings: plain data in, Pony lambda text with bound values out.

Filters arrive as JSON-like data from GraphQL, the CLI and importers. :func:`compile_filter`
turns one into a :class:`CompiledFilter`; :func:`compile_order` turns an ordering into
lambda text. Identifiers in the text come only from metadata (a key is looked up before it
is written), values only ever travel as bound parameters named ``v0, v1, ...``, so user
input can neither inject SQL nor pick a variable name.

Vocabulary (field names are the metadata's snake_case names)::

    {"name": {"icontains": "ltd"}, "credit": {"gte": 10, "lt": 100}}   keys are ANDed
    {"and": [f, ...]}  {"or": [f, ...]}  {"not": f}                    and [] is true, or [] false
    {"customer": {"region": {"eq": "华东"}}}   a ref takes a filter of its TARGET entity
    {"customer": {"isNull": true}}            ... or isNull directly
    {"revenue": {"gt": 100, "currency": {"eq": "EUR"}}}   money: amount, plus its currency
    {"deleted": true}                         top level only: ONLY soft-deleted records

Operators: ``eq ne in notIn`` (every scalar type but json), ``lt lte gt gte`` (int,
decimal, money, float, date, datetime, string), ``contains icontains startsWith`` (string,
text, email, phone, enum), ``isNull`` (every type; the only one for json). bool takes
``eq ne isNull``. Base fields ``id created_at updated_at created_by version`` are always
filterable; ``readable`` is asked about declared fields only.

Logic is two-valued: a comparison never matches an empty (NULL) field, and ``ne``/``notIn``
and ``not`` are exact complements, so they DO keep records whose field or ref is empty.
Every leaf is written NULL-safe (``x.f is not None and ...``) because SQL's NOT over NULL
would otherwise drop those records silently.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pony.orm import desc

from .errors import FieldProblem, ValidationError
from .metadata import CURRENCY_SUFFIX, EntityRegistry, FieldSpec

MAX_DEPTH = 8  #: nesting levels of and/or/not/ref filters
MAX_CONDITIONS = 200  #: operators plus ref subqueries in one filter
MAX_LIST = 1000  #: items of one in/notIn list
MAX_VALUES = 10_000  #: bound values in one filter (SQLite allows ~32k parameters)
MAX_ORDER_KEYS = 10

#: scope(entity, var) -> (Pony condition on ``var``, its bound values) or None (no limit).
Scope = Callable[[str, str], tuple[str, dict[str, Any]] | None]
#: readable(entity, field) -> False hides the field: it is treated exactly like unknown.
Readable = Callable[[str, str], bool]

#: Globals the text of :func:`compile_order` needs.
ORDER_GLOBALS: dict[str, Any] = {"desc": desc}

_TRUE, _FALSE = "True", "False"
_EQUALITY = ("eq", "ne", "in", "notIn")
_COMPARE = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_MATCH = ("contains", "icontains", "startsWith")
_NULL = ("isNull",)
_CMP = tuple(_COMPARE)
#: Operators per field type, in the order messages list them.
OPERATORS: dict[str, tuple[str, ...]] = {
    **{t: _EQUALITY + _CMP + _NULL for t in ("int", "id", "decimal", "money", "float", "date")},
    "datetime": _EQUALITY + _CMP + _NULL,
    "string": _EQUALITY + _CMP + _MATCH + _NULL,
    **{t: _EQUALITY + _MATCH + _NULL for t in ("text", "email", "phone", "enum")},
    "bool": ("eq", "ne", "isNull"),
    "json": _NULL,
    "currency": _EQUALITY + _NULL,  # the <money>_currency column
    "ref": _NULL,  # plus a nested filter of the target
}
#: Base columns and their types; the first four are never NULL.
BASE_TYPES = {
    "id": "id",
    "created_at": "datetime",
    "updated_at": "datetime",
    "version": "int",
    "created_by": "id",
}
_NOT_NULL = frozenset({"id", "created_at", "updated_at", "version"})
_BASE_SPECS = {name: FieldSpec(name, t, origin="engine") for name, t in BASE_TYPES.items()}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class CompiledFilter:
    """A filter ready for Pony: ``text`` is ``lambda x: <condition>``.

    ``globals`` holds the entity classes the subqueries name, ``locals`` the bound values.
    ``include_deleted`` is True for ``deleted: true``: the caller must then NOT add its own
    ``deleted_at is None`` condition (the text already keeps only deleted records).
    """

    text: str
    globals: dict[str, Any] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    include_deleted: bool = False

    def apply(self, query: Any) -> Any:
        """``query`` narrowed by this filter (unchanged when the filter is empty)."""
        if self.text == f"lambda x: {_TRUE}":
            return query
        return query.filter(self.text, self.globals, self.locals)


def _short(key: Any) -> str:
    text = key if isinstance(key, str) else repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(parts: list[str], op: str) -> str:
    """``parts`` joined by and/or, folding the constants True and False."""
    absorbing, neutral = (_FALSE, _TRUE) if op == "and" else (_TRUE, _FALSE)
    if absorbing in parts:
        return absorbing
    parts = [p for p in parts if p != neutral]
    if not parts:
        return neutral
    return parts[0] if len(parts) == 1 else "(" + f" {op} ".join(parts) + ")"


def _negate(text: str) -> str:
    return {_TRUE: _FALSE, _FALSE: _TRUE}.get(text) or f"(not {text})"


def _coerce(kind: str, value: Any) -> Any:
    """JSON-ish ``value`` as a Python value of field type ``kind``; ValueError says why."""
    if value is None:
        raise ValueError("needs a value; use isNull to match empty fields")
    if kind in ("string", "text", "email", "phone", "enum"):
        if not isinstance(value, str):
            raise ValueError("expects a text")
        if "\x00" in value:  # PostgreSQL refuses NUL in text; say so instead of failing there
            raise ValueError("may not contain NUL characters")
        return value
    if kind == "id" and isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value.strip()):
        value = int(value)  # GraphQL IDs travel as text
    if kind in ("int", "id"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expects a whole number")
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError("is out of range")
        return value
    if kind in ("decimal", "money", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise ValueError("expects a number")
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{_short(value)!r} is not a number") from None
        # Huge exponents overflow PostgreSQL numeric; no stored value is near them anyway.
        if not number.is_finite() or (number and not -40 <= number.adjusted() <= 40):
            raise ValueError("expects a finite number of reasonable size")
        return float(number) if kind == "float" else number
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("expects true or false")
        return value
    if kind == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError("expects a date YYYY-MM-DD")
    if kind == "datetime":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("expects an ISO 8601 date and time") from None
        if not isinstance(value, datetime):
            raise ValueError("expects an ISO 8601 date and time")
        # Stored datetimes are naive UTC (see validation.coerce); compare like with like.
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if kind == "currency":
        if not isinstance(value, str) or not _CURRENCY.match(value):
            raise ValueError("expects an ISO 4217 currency code such as EUR")
        return value
    raise AssertionError(kind)


class _Compiler:
    """One compilation: collects bound values, entity globals and the limits' counters."""

    def __init__(
        self,
        registry: EntityRegistry,
        classes: Mapping[str, type],
        root: str,
        scope: Scope | None,
        readable: Readable | None,
    ) -> None:
        self.registry, self.classes, self.root = registry, classes, root
        self.scope, self.readable = scope, readable
        self.globals: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}
        # Counters: bound values (limit), their names, conditions, subquery and scope names.
        self.values = self.named = self.conditions = self.subqueries = self.scoped = 0
        self.include_deleted = False

    def problem(self, path: Sequence[str], message: str) -> ValidationError:
        return ValidationError(FieldProblem(self.root, ".".join(path) or None, message))

    def bind(self, value: Any, path: Sequence[str]) -> str:
        self.values += len(value) if isinstance(value, list) else 1
        if self.values > MAX_VALUES:
            raise self.problem(path, f"a filter may bind at most {MAX_VALUES} values")
        name = f"v{self.named}"
        self.named += 1
        self.locals[name] = value
        return name

    def count(self, path: Sequence[str]) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.problem(path, f"a filter may hold at most {MAX_CONDITIONS} conditions")

    def class_name(self, entity: str) -> str:
        name = entity if not keyword.iskeyword(entity) else f"E_{entity}"
        self.globals[name] = self.classes[entity]
        return name

    # -- structure ------------------------------------------------------------------
    def filter(self, entity: str, var: str, flt: Any, path: tuple[str, ...], depth: int) -> str:
        if depth > MAX_DEPTH:
            raise self.problem(path, f"filters may nest at most {MAX_DEPTH} levels deep")
        if not isinstance(flt, Mapping):
            raise self.problem(path, "a filter must be a mapping of field names to conditions")
        parts = []
        for key, cond in flt.items():
            if key in ("and", "or"):
                if not isinstance(cond, list | tuple):
                    raise self.problem((*path, key), f"{key} takes a list of filters")
                items = [self.filter(entity, var, item, path, depth + 1) for item in cond]
                parts.append(_join(items, key))
            elif key == "not":
                parts.append(_negate(self.filter(entity, var, cond, path, depth + 1)))
            elif key == "deleted":
                if path or depth != 1:
                    raise self.problem((*path, key), "deleted is only allowed at the top level")
                if not isinstance(cond, bool):
                    raise self.problem((key,), "deleted takes true (only the recycle bin)")
                if cond:
                    self.include_deleted = True
                    parts.append(f"{var}.deleted_at is not None")
            else:
                parts.append(self.field(entity, var, key, cond, path, depth))
        return _join(parts, "and")

    def spec(self, entity: str, key: Any, path: tuple[str, ...], depth: int) -> FieldSpec:
        """The field ``key`` of ``entity``; unknown and unreadable look the same."""
        if isinstance(key, str):
            if key in _BASE_SPECS:
                return _BASE_SPECS[key]
            f = self.registry[entity].fields.get(key)
            if f is not None and (self.readable is None or self.readable(entity, key)):
                return f
        fields = self.registry[entity].fields
        names = [
            *_BASE_SPECS,
            *(n for n in fields if self.readable is None or self.readable(entity, n)),
        ]
        extra = ", deleted" if not path and depth == 1 else ""
        raise self.problem(
            (*path, _short(key)),
            f"{entity} has no field {_short(key)!r} to filter on; use one of "
            f"{', '.join(names)} or and, or, not{extra}",
        )

    def field(
        self, entity: str, var: str, key: Any, cond: Any, path: tuple[str, ...], depth: int
    ) -> str:
        f = self.spec(entity, key, path, depth)
        here = (*path, f.name)
        ops = OPERATORS[f.type]
        if not isinstance(cond, Mapping):
            what = f"a filter of {f.to} or " if f.is_ref else ""
            raise self.problem(here, f"expects {what}a mapping of operators: {', '.join(ops)}")
        if f.is_ref:
            return self.ref(var, f, cond, here, depth)
        parts = []
        for op, value in cond.items():
            if f.type == "money" and op == "currency":
                parts.append(self.currency(var, f, value, (*here, "currency")))
            elif op not in ops:
                more = ", currency" if f.type == "money" else ""
                raise self.problem(
                    here,
                    f"unknown operator {_short(op)!r} for a {f.type} field; "
                    f"use {', '.join(ops)}{more}",
                )
            else:
                parts.append(
                    self.leaf(f, f"{var}.{f.name}", f.name not in _NOT_NULL, op, value, here)
                )
        return _join(parts, "and")

    def currency(self, var: str, f: FieldSpec, cond: Any, here: tuple[str, ...]) -> str:
        ops = OPERATORS["currency"]
        if not isinstance(cond, Mapping):
            raise self.problem(here, f"expects a mapping of operators: {', '.join(ops)}")
        parts = []
        column = f"{var}.{f.name}{CURRENCY_SUFFIX}"
        for op, value in cond.items():
            if op not in ops:
                raise self.problem(here, f"unknown operator {_short(op)!r}; use {', '.join(ops)}")
            spec = FieldSpec(f.name + CURRENCY_SUFFIX, "currency")
            parts.append(self.leaf(spec, column, True, op, value, here))
        return _join(parts, "and")

    def ref(self, var: str, f: FieldSpec, cond: Mapping, here: tuple[str, ...], depth: int) -> str:
        """``x.ref in (y for y in Target if live and in scope and nested)``; never a path
        ``x.ref.field``, whose implicit join would lose empty refs under not/or."""
        parts, nested = [], {}
        for key, value in cond.items():
            if key == "isNull":
                parts.append(self.leaf(f, f"{var}.{f.name}", True, "isNull", value, here))
            else:
                nested[key] = value
        if not nested:
            return _join(parts, "and")
        self.count(here)
        assert f.to is not None
        self.subqueries += 1
        y = f"y{self.subqueries}"
        inner = self.filter(f.to, y, nested, here, depth + 1)
        if inner == _FALSE:
            return _FALSE
        conds = [f"{y}.deleted_at is None"]
        limit = self.scope_condition(f.to, y)
        if limit is not None:
            conds.append(limit)
        if inner != _TRUE:
            conds.append(inner)
        target = self.class_name(f.to)
        column = f"{var}.{f.name}"
        sub = f"({y} for {y} in {target} if {' and '.join(conds)})"
        parts.append(f"({column} is not None and {column} in {sub})")
        return _join(parts, "and")

    def scope_condition(self, entity: str, var: str) -> str | None:
        """The permission condition on ``var``, its values renamed ``s0, s1, ...`` so two
        subqueries' conditions never share a name; entity classes it names go to globals."""
        result = self.scope(entity, var) if self.scope is not None else None
        if result is None:
            return None
        text, values = result
        rename = {}
        for name, value in values.items():
            rename[name] = f"s{self.scoped}"
            self.locals[rename[name]] = value
            self.scoped += 1
        tree = ast.parse(text.strip(), mode="eval")
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if node.id in rename:
                    node.id = rename[node.id]
                elif node.id in self.classes:
                    self.globals[node.id] = self.classes[node.id]
        return f"({ast.unparse(tree)})"

    # -- one operator -----------------------------------------------------------------
    def leaf(
        self, f: FieldSpec, column: str, nullable: bool, op: str, value: Any, here: tuple[str, ...]
    ) -> str:
        self.count(here)
        kind = f.type
        if op == "isNull":
            if not isinstance(value, bool):
                raise self.problem(here, "isNull takes true or false")
            if not nullable:
                return _FALSE if value else _TRUE
            return f"{column} is None" if value else f"{column} is not None"
        guard = f"{column} is not None and " if nullable else ""
        try:
            if op in ("in", "notIn"):
                if not isinstance(value, list | tuple):
                    raise ValueError("takes a list of values")
                if len(value) > MAX_LIST:
                    raise ValueError(f"takes at most {MAX_LIST} values")
                items = [self.checked(f, kind, item) for item in value]
            else:
                item = self.checked(f, kind, value) if op not in _MATCH else _coerce("text", value)
        except ValueError as exc:
            raise self.problem(here, f"{op} {exc}") from None
        if op == "in":
            return f"({guard}{column} in {self.bind(items, here)})" if items else _FALSE
        if op == "notIn":
            if not items:
                return _TRUE
            name = self.bind(items, here)
            return (
                f"({column} is None or {column} not in {name})"
                if nullable
                else f"({column} not in {name})"
            )
        if op == "ne":
            name = self.bind(item, here)
            return (
                f"({column} is None or {column} != {name})" if nullable else f"({column} != {name})"
            )
        if op == "icontains":
            # Lowered here and in SQL (py_lower on SQLite, lower() on PostgreSQL); Pony
            # escapes LIKE wildcards itself (ESCAPE '!'), so % and _ are literal.
            return f"({guard}{self.bind(item.lower(), here)} in {column}.lower())"
        name = self.bind(item, here)
        if op == "contains":
            return f"({guard}{name} in {column})"
        if op == "startsWith":
            return f"({guard}{column}.startswith({name}))"
        symbol = "==" if op == "eq" else _COMPARE[op]
        return f"({guard}{column} {symbol} {name})"

    def checked(self, f: FieldSpec, kind: str, value: Any) -> Any:
        """A value for eq/ne/in/notIn/compare: coerced, and for enums one of the choices."""
        result = _coerce(kind, value)
        if kind == "enum" and result not in f.choice_values():
            raise ValueError(f"{_short(result)!r} is not one of {', '.join(f.choice_values())}")
        if kind == "email" and "@" in result:  # stored with the domain lower-cased
            local, _, domain = result.rpartition("@")
            result = f"{local}@{domain.lower()}"
        return result


def compile_filter(
    registry: EntityRegistry,
    classes: Mapping[str, type],
    entity: str,
    flt: Mapping[str, Any] | None,
    *,
    scope: Scope | None = None,
    readable: Readable | None = None,
) -> CompiledFilter:
    """Compile the filter ``flt`` on ``entity`` (see the module docstring for the vocabulary).

    ``scope`` is ANDed into every ref subquery, so a nested filter only sees target records
    the caller may read; the top-level scope and ``deleted_at is None`` are the caller's
    (skip the latter when ``include_deleted``). Fields ``readable`` refuses are reported as
    unknown. Every mistake raises ValidationError naming the dotted path (``customer.region``)
    and what is allowed there; so does going past MAX_DEPTH nesting levels, MAX_CONDITIONS
    conditions, MAX_LIST items in one list or MAX_VALUES bound values. Equal filters give
    equal text (names are positional), so Pony's translation cache is reused.
    """
    if entity not in registry:
        raise ValidationError(FieldProblem(entity, None, "is not a known entity"))
    compiler = _Compiler(registry, classes, entity, scope, readable)
    condition = compiler.filter(entity, "x", flt if flt is not None else {}, (), 1)
    return CompiledFilter(
        f"lambda x: {condition}", compiler.globals, compiler.locals, compiler.include_deleted
    )


def compile_order(
    registry: EntityRegistry,
    entity: str,
    order_by: Sequence[Mapping[str, str]] | None,
    *,
    readable: Readable | None = None,
) -> str:
    """Lambda text for ``query.order_by(text, ORDER_GLOBALS)`` from ``[{field: ASC|DESC}]``.

    Scalar and base fields only (not json, not refs); ``deleted_at`` too, for the recycle
    bin. Empty values sort last in both directions on both databases (SQLite and PostgreSQL
    disagree by default). ``x.id`` always ends the key so pages are stable.
    """
    spec = registry[entity]

    def problem(where: str, message: str) -> ValidationError:
        return ValidationError(FieldProblem(entity, where, message))

    if order_by is None:
        order_by = []
    if isinstance(order_by, Mapping | str | bytes) or not isinstance(order_by, Sequence):
        raise problem("order_by", "expects a list of {field: ASC or DESC}")
    if len(order_by) > MAX_ORDER_KEYS:
        raise problem("order_by", f"may name at most {MAX_ORDER_KEYS} fields")
    orderable = {**BASE_TYPES, "deleted_at": "datetime"}
    for f in spec:
        if f.type not in ("json", "ref") and (readable is None or readable(entity, f.name)):
            orderable[f.name] = f.type
    keys: list[str] = []
    seen: set[str] = set()
    for item in order_by:
        if not isinstance(item, Mapping) or len(item) != 1:
            raise problem("order_by", "each item names one field: {field: ASC or DESC}")
        ((name, direction),) = item.items()
        if not isinstance(name, str) or name not in orderable:
            raise problem(
                _short(name),
                f"{entity} cannot be ordered by {_short(name)!r}; "
                f"use one of {', '.join(orderable)}",
            )
        if not isinstance(direction, str) or direction.upper() not in ("ASC", "DESC"):
            raise problem(name, "order direction must be ASC or DESC")
        if name in seen:
            raise problem(name, "is listed twice in order_by")
        seen.add(name)
        column = f"x.{name}"
        if name not in _NOT_NULL:
            keys.append(f"{column} is None")  # False < True: values first, empties last
        keys.append(f"desc({column})" if direction.upper() == "DESC" else column)
    if "id" not in seen:
        keys.append("x.id")
    return "lambda x: " + (keys[0] if len(keys) == 1 else f"({', '.join(keys)})")


__all__ = [
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_LIST",
    "OPERATORS",
    "ORDER_GLOBALS",
    "CompiledFilter",
    "Readable",
    "Scope",
    "compile_filter",
    "compile_order",
]
