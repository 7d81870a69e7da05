"""Checking and normalising field values against entity metadata.

:func:`coerce` turns one input value into the stored form of its field type (or raises
ValueError with a message for a person); :func:`check_write` checks a whole write and
collects every problem, so a caller learns about all bad fields at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from .actor import Actor
from .errors import FieldProblem
from .metadata import BASE_FIELDS, EntitySpec, FieldSpec

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+?[0-9 ()\-./]{3,}((\s*(ext\.?|x|转|#)\s*)[0-9]{1,6})?$", re.IGNORECASE)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
#: Currency codes already checked (at most 26**3 of them)
_CODES: set[str] = set()
INT64 = (-(2**63), 2**63 - 1)
_ONE = Decimal(1)
#: scale -> the quantum of that many decimal places (2 -> Decimal("0.01"))
_QUANTA: dict[int, Decimal] = {}


class Money(NamedTuple):
    """An amount with its ISO 4217 currency."""

    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@dataclass(frozen=True)
class WriteCheck:
    """Result of :func:`check_write`: clean values to store and every problem found."""

    values: dict[str, Any]
    problems: list[FieldProblem]


def _decimal(value: Any) -> Decimal:
    if type(value) is Decimal:  # as Decimal(str(value)) would give it, without the detour
        if not value.is_finite():
            raise ValueError("must be a finite number")
        return value
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not result.is_finite():
        raise ValueError("must be a finite number")
    return result


def _fit_decimal(value: Decimal, precision: int, scale: int) -> Decimal:
    """``value`` at the field's scale (``12`` -> ``12.00``), as the database returns it."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > scale:
        raise ValueError(f"has more than {scale} decimal places")
    # digits before the point: adjusted() + 1, plus one when rounding carries; count them
    # exactly only when that could reach the limit
    if value.adjusted() + 2 > precision - scale:
        digits_before = len(value.quantize(_ONE).copy_abs().as_tuple().digits)
        if value.copy_abs() >= 1 and digits_before > precision - scale:
            raise ValueError(f"has more than {precision - scale} digits before the decimal point")
    quantum = _QUANTA.get(scale)
    if quantum is None:
        quantum = _QUANTA[scale] = _ONE.scaleb(-scale)
    return value.quantize(quantum)


def _facts(f: FieldSpec) -> tuple[int | None, frozenset[str]]:
    """The text limit and the enum values of ``f``, worked out once per field (kept on
    the immutable FieldSpec, as functools.cached_property would)."""
    facts = f.__dict__.get("_coerce_facts")
    if facts is None:
        limit = f.column_length if f.type != "text" else f.max_length
        facts = (limit, frozenset(f.choice_values()))
        object.__setattr__(f, "_coerce_facts", facts)
    return facts


def coerce(f: FieldSpec, value: Any, currency: str) -> Any:
    """``value`` in the stored form of ``f``'s type; ValueError says what is wrong.

    None passes through (required-ness is checked by the caller). Strings are accepted for
    numbers and dates so importers and the CLI can pass text.
    """
    if value is None:
        return None
    return _COERCE[f.type](f, value, currency)


def _text(f: FieldSpec, value: Any, currency: str) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be text")
    if "\x00" in value:  # PostgreSQL refuses NUL in text: say so instead of failing there
        raise ValueError("may not contain NUL characters")
    t = f.type
    value = value.strip() if t != "text" else value
    if value == "":
        return None
    limit, choices = _facts(f)
    if limit and len(value) > limit:
        raise ValueError(f"is longer than {limit} characters")
    if t == "email":
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    if t == "phone" and (not _PHONE.match(value) or sum(ch.isdigit() for ch in value) < 5):
        raise ValueError(f"{value!r} is not a phone number")
    if t == "enum" and value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(f.choice_values())}")
    return value


def _int(f: FieldSpec, value: Any, currency: str) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("must be a whole number")
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError("is out of range")
    return value


def _float(f: FieldSpec, value: Any, currency: str) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(result):
        raise ValueError("must be a finite number")
    return result


def _decimal_field(f: FieldSpec, value: Any, currency: str) -> Decimal:
    return _fit_decimal(_decimal(value), f.precision, f.scale)


def _money_field(f: FieldSpec, value: Any, currency: str) -> Money:
    return _money(value, currency)


def _bool(f: FieldSpec, value: Any, currency: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("must be true or false")


def _date(f: FieldSpec, value: Any, currency: str) -> date:
    if type(value) is date:
        return value
    if isinstance(value, datetime):
        raise ValueError("must be a date without a time")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _datetime(f: FieldSpec, value: Any, currency: str) -> datetime:
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time (ISO 8601)") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _json(f: FieldSpec, value: Any, currency: str) -> Any:
    _check_json(value)
    return value


def _ref(f: FieldSpec, value: Any, currency: str) -> int:
    if type(value) is int and value > 0:
        return value
    if isinstance(value, Mapping) and "id" in value:
        value = value["id"]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"must be the id of a {f.to}")
    return value


#: Field type -> ``coerce(field, value, currency)`` for values that are not None.
_COERCE: dict[str, Callable[[FieldSpec, Any, str], Any]] = {
    "string": _text,
    "text": _text,
    "email": _text,
    "phone": _text,
    "enum": _text,
    "int": _int,
    "float": _float,
    "decimal": _decimal_field,
    "money": _money_field,
    "bool": _bool,
    "date": _date,
    "datetime": _datetime,
    "json": _json,
    "ref": _ref,
}


def _money(value: Any, currency: str) -> Money:
    if isinstance(value, tuple) and len(value) == 2:  # Money itself first: the common case
        amount, cur = value
    elif isinstance(value, Mapping):
        if "amount" not in value:
            raise ValueError("needs an amount")
        amount, cur = value["amount"], value.get("currency") or currency
    elif isinstance(value, str) and len(value.split()) == 2:
        amount, cur = value.split()
    else:
        amount, cur = value, currency
    if type(cur) is not str or cur not in _CODES:  # a code seen before is taken as it is
        cur = str(cur).strip().upper()
        if not _CURRENCY.match(cur):
            raise ValueError(f"currency {cur!r} is not an ISO 4217 code")
        _CODES.add(cur)
    return Money(_fit_decimal(_decimal(amount), 18, 2), cur)


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("may not contain NUL characters")
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must contain finite numbers only")
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise ValueError("object keys must be text without NUL characters")
            _check_json(item, depth + 1)
        return
    raise ValueError(f"cannot store a {type(value).__name__} as JSON")


def in_range(f: FieldSpec, value: Any) -> str | None:
    """Why ``value`` is outside ``f``'s min/max, or None."""
    compare = value.amount if isinstance(value, Money) else value
    if f.min is not None and compare < f.min:
        return f"must be at least {f.min}"
    if f.max is not None and compare > f.max:
        return f"must be at most {f.max}"
    return None


def check_write(
    spec: EntitySpec,
    data: Mapping[str, Any],
    *,
    creating: bool,
    actor: Actor,
    currency: str,
    current: Mapping[str, Any] | None = None,
) -> WriteCheck:
    """Check the fields of one create (``creating``) or patch; collect every problem.

    Defaults fill absent fields on create. Read-only and internal fields may be written
    only by the system (plugins computing totals, the engine's own user management).
    Uniqueness and ref targets need the database and are checked by the record API.
    """
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}
    plan = _plan(spec)
    fields = plan.fields
    system = actor.is_system
    for name, raw in data.items():
        entry = fields.get(name)
        if entry is None:
            message = (
                "is managed by the engine"
                if name in BASE_FIELDS
                else f"is not a field of {spec.name}"
            )
            problems.append(FieldProblem(spec.name, name, message))
            continue
        f, convert, guarded, ranged = entry
        if guarded and not system:
            problems.append(FieldProblem(spec.name, name, "is read-only"))
            continue
        if raw is None:
            values[name] = None
            continue
        try:
            value = convert(f, raw, currency)
        except ValueError as exc:
            problems.append(FieldProblem(spec.name, name, str(exc)))
            continue
        if ranged and value is not None:
            message = in_range(f, value)
            if message:
                problems.append(FieldProblem(spec.name, name, message))
                continue
        values[name] = value
    if creating:
        for f in plan.defaults:
            if f.name not in data:
                values[f.name] = coerce(f, f.default, currency)
    for name in plan.required:
        after = values.get(name) if name in values else (current or {}).get(name)
        if after is None and (creating or name in values):
            if not any(p.field == name for p in problems):
                problems.append(FieldProblem(spec.name, name, "is required"))
    return WriteCheck(values, problems)


class _Plan(NamedTuple):
    #: name -> (field, its coerce function, read-only or internal, has min or max)
    fields: dict[str, tuple[FieldSpec, Callable[[FieldSpec, Any, str], Any], bool, bool]]
    defaults: tuple[FieldSpec, ...]
    required: tuple[str, ...]


def _plan(spec: EntitySpec) -> _Plan:
    """What :func:`check_write` needs of an entity's fields, worked out once per entity
    (kept on the immutable EntitySpec)."""
    plan = spec.__dict__.get("_write_plan")
    if plan is None:
        plan = _Plan(
            {
                f.name: (
                    f,
                    _COERCE[f.type],
                    f.readonly or f.internal,
                    f.min is not None or f.max is not None,
                )
                for f in spec
            },
            tuple(f for f in spec if f.default is not None),
            tuple(f.name for f in spec if f.required),
        )
        object.__setattr__(spec, "_write_plan", plan)
    return plan
