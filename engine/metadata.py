"""Entity metadata: the one description from which tables, validation and the API are built.

Plugins and admins describe entities as plain data (a dict, or a YAML mapping with line
numbers). :func:`parse_entity` turns one description into an :class:`EntitySpec`;
:class:`EntityRegistry` merges them with extensions, checks the whole (refs resolve,
reverse names do not clash) and answers questions about the result.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ConfigError, ConfigProblem

FIELD_TYPES = frozenset(
    {
        "string",
        "text",
        "int",
        "decimal",
        "money",
        "float",
        "bool",
        "date",
        "datetime",
        "enum",
        "json",
        "email",
        "phone",
        "ref",
    }
)
#: Columns every entity gets; no description may declare them.
BASE_FIELDS = ("id", "created_at", "updated_at", "created_by", "version", "deleted_at")
RESERVED_FIELDS = frozenset(BASE_FIELDS) | {"owner", "members", "deleted"}
FIELD_OPTIONS = frozenset(
    {
        "type",
        "label",
        "labels",
        "required",
        "unique",
        "default",
        "indexed",
        "readonly",
        "internal",
        "max_length",
        "min",
        "max",
        "precision",
        "scale",
        "choices",
        "to",
        "reverse",
        "description",
    }
)
ENTITY_KEYS = frozenset(
    {
        "name",
        "plural",
        "label",
        "labels",
        "fields",
        "owned",
        "owner_via",
        "parent",
        "duplicate_keys",
        "natural_key",
        "description",
        "members",
    }
)
DEFAULT_STRING_LENGTH = 255
ENUM_LENGTH = 64
EMAIL_LENGTH = 254
PHONE_LENGTH = 32
CURRENCY_SUFFIX = "_currency"
#: The engine entity that owns records of ``owned: true`` entities.
OWNER_ENTITY = "User"

_ENTITY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def snake(name: str) -> str:
    """``ExpoBooking`` -> ``expo_booking``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def default_plural(name: str) -> str:
    """English plural of the snake-cased entity name: ``Opportunity`` -> ``opportunities``."""
    base = snake(name)
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        return base[:-1] + "ies"
    if base.endswith(("s", "x", "z", "ch", "sh")):
        return base + "es"
    return base + "s"


@dataclass(frozen=True)
class Choice:
    """One value of an enum field with its labels."""

    value: str
    label: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldSpec:
    """One field of an entity. ``origin`` says who declared it (plugin or file:line)."""

    name: str
    type: str
    origin: str = ""
    label: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    required: bool = False
    unique: bool = False
    default: Any = None
    indexed: bool = False
    readonly: bool = False
    internal: bool = False
    max_length: int | None = None
    min: Any = None
    max: Any = None
    precision: int = 18
    scale: int = 2
    choices: tuple[Choice, ...] = ()
    to: str | None = None
    reverse: str | None = None
    description: str = ""

    @property
    def is_ref(self) -> bool:
        return self.type == "ref"

    @property
    def column_length(self) -> int | None:
        """The VARCHAR length the column gets, or None for unbounded types."""
        if self.type == "string":
            return self.max_length or DEFAULT_STRING_LENGTH
        if self.type == "enum":
            return max([ENUM_LENGTH, *(len(c.value) for c in self.choices)])
        if self.type == "email":
            return self.max_length or EMAIL_LENGTH
        if self.type == "phone":
            return self.max_length or PHONE_LENGTH
        return None

    def choice_values(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.choices)

    def label_in(self, language: str | None) -> str:
        return (self.labels.get(language) if language else None) or self.label


@dataclass(frozen=True)
class Reverse:
    """The reverse side of a ref: ``target.<name>`` lists ``source`` records via ``field``."""

    name: str
    source: str
    field: str


@dataclass(frozen=True)
class EntitySpec:
    """One entity, merged from its declaration and every extension."""

    name: str
    plural: str
    label: str
    origin: str
    fields: Mapping[str, FieldSpec]
    labels: Mapping[str, str] = field(default_factory=dict)
    owned: bool = False
    owner_via: str | None = None
    parent: str | None = None
    duplicate_keys: tuple[str, ...] = ()
    natural_key: str | None = None
    description: str = ""
    members: bool = False
    #: Filled by the registry: the reverse sides of refs pointing here.
    reverses: Mapping[str, Reverse] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return snake(self.name)

    def label_in(self, language: str | None) -> str:
        return (self.labels.get(language) if language else None) or self.label

    def refs(self) -> Iterator[FieldSpec]:
        return (f for f in self.fields.values() if f.type == "ref")

    def __iter__(self) -> Iterator[FieldSpec]:
        return iter(self.fields.values())


class _Problems:
    """Collects every problem of one pass so a check can report all of them."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []

    def add(self, where: str | None, message: str) -> None:
        self.items.append(ConfigProblem(where, message))

    def raise_if_any(self, summary: str) -> None:
        if self.items:
            first = self.items[0]
            raise ConfigError(
                first.message if len(self.items) == 1 else summary,
                where=first.where if len(self.items) == 1 else None,
                problems=list(self.items),
            )


def _where(node: Any, key: Any, fallback: str) -> str:
    """``file:line`` of ``node[key]`` when the node carries lines (see yamlload)."""
    lines = getattr(node, "key_lines", None)
    source = getattr(node, "source", None)
    if lines and key in lines and source:
        return f"{source}:{lines[key]}"
    line = getattr(node, "line", None)
    if source and line:
        return f"{source}:{line}"
    return fallback


def _labels(value: Any, where: str, problems: _Problems) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.add(where, "labels must map a language code to a text, e.g. {zh: 客户}")
        return {}
    return dict(value)


def _parse_choices(raw: Any, where: str, problems: _Problems) -> tuple[Choice, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(where, "an enum field needs a non-empty list of choices")
        return ()
    choices: list[Choice] = []
    for item in raw:
        if isinstance(item, str | int) and not isinstance(item, bool):
            value = str(item)
            choices.append(Choice(value, value.replace("_", " ").capitalize()))
        elif isinstance(item, Mapping) and "value" in item:
            value = str(item["value"])
            choices.append(
                Choice(
                    value,
                    str(item.get("label") or value.replace("_", " ").capitalize()),
                    _labels(item.get("labels"), where, problems),
                )
            )
        else:
            problems.add(where, f"bad enum choice {item!r}: give a value or {{value, label}}")
    values = [c.value for c in choices]
    if len(set(values)) != len(values):
        problems.add(where, "enum choices repeat a value")
    return tuple(choices)


def _number(value: Any, kind: str) -> Any:
    if kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if kind == "datetime":
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(value)
        return value
    if kind == "float":
        return float(value)
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(value) from exc


def parse_field(name: Any, raw: Any, where: str, problems: _Problems) -> FieldSpec | None:
    """One field description -> FieldSpec; problems are collected, None when unusable."""
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        problems.add(where, f"field name {name!r} must be snake_case (a-z, 0-9, _)")
        return None
    if name in RESERVED_FIELDS or keyword.iskeyword(name):
        problems.add(where, f"field name {name!r} is reserved")
        return None
    if name.endswith(CURRENCY_SUFFIX):
        problems.add(where, f"field name {name!r} may not end in {CURRENCY_SUFFIX}")
        return None
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        problems.add(where, f"field {name!r} must be a mapping with at least a type")
        return None
    unknown = sorted(set(raw) - FIELD_OPTIONS)
    if unknown:
        problems.add(where, f"field {name!r}: unknown option(s) {', '.join(map(str, unknown))}")
    ftype = raw.get("type")
    if ftype not in FIELD_TYPES:
        problems.add(
            where,
            f"field {name!r}: unknown type {ftype!r}; use one of {', '.join(sorted(FIELD_TYPES))}",
        )
        return None
    spec = FieldSpec(
        name=name,
        type=ftype,
        origin=where,
        label=str(raw.get("label") or name.replace("_", " ").capitalize()),
        labels=_labels(raw.get("labels"), where, problems),
        description=str(raw.get("description") or ""),
    )
    bool_opts = {}
    for opt in ("required", "unique", "indexed", "readonly", "internal"):
        if opt in raw:
            if not isinstance(raw[opt], bool):
                problems.add(where, f"field {name!r}: {opt} must be true or false")
            else:
                bool_opts[opt] = raw[opt]
    spec = replace(spec, **bool_opts)
    if ftype == "enum":
        spec = replace(spec, choices=_parse_choices(raw.get("choices"), where, problems))
    elif "choices" in raw:
        problems.add(where, f"field {name!r}: choices only apply to enum fields")
    if ftype == "ref":
        to = raw.get("to")
        if not isinstance(to, str) or not to:
            problems.add(where, f"field {name!r}: a ref needs `to: <Entity>`")
        reverse = raw.get("reverse")
        if reverse is not None and (not isinstance(reverse, str) or not _FIELD_NAME.match(reverse)):
            problems.add(where, f"field {name!r}: reverse must be a snake_case name")
            reverse = None
        spec = replace(spec, to=to, reverse=reverse)
    elif "to" in raw or "reverse" in raw:
        problems.add(where, f"field {name!r}: to/reverse only apply to ref fields")
    if "max_length" in raw:
        ml = raw["max_length"]
        if ftype not in ("string", "email", "phone", "text"):
            problems.add(where, f"field {name!r}: max_length applies to text fields only")
        elif isinstance(ml, bool) or not isinstance(ml, int) or ml <= 0:
            problems.add(where, f"field {name!r}: max_length must be a positive integer")
        else:
            spec = replace(spec, max_length=ml)
    if ftype == "decimal":
        for opt in ("precision", "scale"):
            if opt in raw:
                v = raw[opt]
                if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 38:
                    problems.add(where, f"field {name!r}: {opt} must be an integer 0-38")
                else:
                    spec = replace(spec, **{opt: v})
        if spec.scale > spec.precision:
            problems.add(where, f"field {name!r}: scale is larger than precision")
    for opt in ("min", "max"):
        if opt in raw and raw[opt] is not None:
            if ftype not in ("int", "decimal", "money", "float", "date", "datetime"):
                problems.add(where, f"field {name!r}: {opt} applies to numbers and dates only")
                continue
            kind = "decimal" if ftype == "money" else ftype
            try:
                spec = replace(spec, **{opt: _number(raw[opt], kind)})
            except (ValueError, TypeError):
                problems.add(where, f"field {name!r}: {opt} {raw[opt]!r} is not a valid {ftype}")
    if "default" in raw and raw["default"] is not None:
        if ftype in ("ref", "money"):
            problems.add(where, f"field {name!r}: a {ftype} field cannot have a default")
        else:
            spec = replace(spec, default=raw["default"])
            if ftype == "enum" and spec.choices and str(spec.default) not in spec.choice_values():
                problems.add(where, f"field {name!r}: default {spec.default!r} is not a choice")
    if spec.unique and ftype in ("json", "text", "bool", "money"):
        problems.add(where, f"field {name!r}: a {ftype} field cannot be unique")
    return spec


def parse_fields(raw: Any, where: str, problems: _Problems) -> dict[str, FieldSpec]:
    if not isinstance(raw, Mapping):
        problems.add(where, "fields must be a mapping of field name to description")
        return {}
    fields: dict[str, FieldSpec] = {}
    for name, value in raw.items():
        spec = parse_field(name, value, _where(raw, name, where), problems)
        if spec is not None:
            fields[spec.name] = spec
    return fields


def parse_entity(raw: Any, origin: str, problems: _Problems | None = None) -> EntitySpec | None:
    """One entity description (dict or located YAML mapping) -> EntitySpec.

    ``origin`` names the declarer (``plugin sales`` or a file); with lines available each
    problem names ``file:line``. Raises ConfigError unless a ``problems`` collector is given.
    """
    own = problems is None
    problems = problems or _Problems()
    where = _where(raw, None, origin)
    if not isinstance(raw, Mapping):
        problems.add(where, "an entity description must be a mapping")
        if own:
            problems.raise_if_any("bad entity description")
        return None
    unknown = sorted(set(raw) - ENTITY_KEYS)
    if unknown:
        problems.add(where, f"unknown key(s) {', '.join(map(str, unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _ENTITY_NAME.match(name):
        problems.add(_where(raw, "name", where), f"entity name {name!r} must be CamelCase")
        if own:
            problems.raise_if_any("bad entity description")
        return None
    plural = raw.get("plural") or default_plural(name)
    if not isinstance(plural, str) or not _FIELD_NAME.match(plural):
        problems.add(_where(raw, "plural", where), f"{name}: plural must be snake_case")
        plural = default_plural(name)
    spec = EntitySpec(
        name=name,
        plural=plural,
        label=str(raw.get("label") or name),
        labels=_labels(raw.get("labels"), _where(raw, "labels", where), problems),
        origin=where,
        fields=parse_fields(raw.get("fields") or {}, _where(raw, "fields", where), problems),
        owned=bool(raw.get("owned", False)),
        owner_via=raw.get("owner_via"),
        parent=raw.get("parent"),
        duplicate_keys=tuple(raw.get("duplicate_keys") or ()),
        natural_key=raw.get("natural_key"),
        description=str(raw.get("description") or ""),
        members=bool(raw.get("members", False)),
    )
    if own:
        problems.raise_if_any(f"{name}: bad entity description")
    return spec


class EntityRegistry:
    """All entities of one engine, after merging extensions; immutable once finalised."""

    def __init__(self) -> None:
        self._specs: dict[str, EntitySpec] = {}
        self._extensions: list[tuple[str, Mapping[str, FieldSpec], str]] = []
        self._problems = _Problems()
        self._final = False

    # -- building -------------------------------------------------------------------
    def declare(self, raw: Any, origin: str) -> None:
        """Add one entity description (dict, located mapping or EntitySpec)."""
        self._check_open()
        spec = raw if isinstance(raw, EntitySpec) else parse_entity(raw, origin, self._problems)
        if spec is None:
            return
        if spec.name in self._specs:
            other = self._specs[spec.name]
            self._problems.add(
                spec.origin,
                f"entity {spec.name} is declared twice: by {other.origin} and by {spec.origin}",
            )
            return
        self._specs[spec.name] = spec

    def extend(self, entity: str, raw_fields: Any, origin: str) -> None:
        """Add fields to an entity declared by someone else (checked at finalise)."""
        self._check_open()
        where = _where(raw_fields, None, origin)
        fields = parse_fields(raw_fields, where, self._problems)
        self._extensions.append((entity, fields, where))

    def declares(self, entity: str, field_name: str | None = None) -> bool:
        """Whether ``entity`` (and its ``field_name``, own or extended) is declared so far."""
        spec = self._specs.get(entity)
        if spec is None or field_name is None:
            return spec is not None
        return field_name in spec.fields or any(
            name == entity and field_name in fields for name, fields, _ in self._extensions
        )

    def finalize(self) -> EntityRegistry:
        """Merge extensions, resolve refs and reverse names; raise every problem at once."""
        self._check_open()
        problems = self._problems
        for entity, fields, where in self._extensions:
            spec = self._specs.get(entity)
            if spec is None:
                problems.add(where, f"cannot extend unknown entity {entity!r}")
                continue
            merged = dict(spec.fields)
            for name, f in fields.items():
                if name in merged:
                    problems.add(
                        f.origin,
                        f"{entity}.{name} is already declared by {merged[name].origin}",
                    )
                    continue
                merged[name] = f
            self._specs[entity] = replace(spec, fields=merged)
        for name, spec in list(self._specs.items()):
            if spec.owned:
                owner = FieldSpec(
                    name="owner",
                    type="ref",
                    to=OWNER_ENTITY,
                    reverse=f"owned_{spec.plural}",
                    origin="engine",
                    label="Owner",
                    labels={"zh": "负责人"},
                    indexed=True,
                )
                self._specs[name] = replace(spec, fields={**spec.fields, "owner": owner})
        reverses: dict[str, dict[str, Reverse]] = {name: {} for name in self._specs}
        reverse_origin: dict[tuple[str, str], str] = {}
        for spec in self._specs.values():
            self._check_entity(spec, problems)
            for f in spec.refs():
                if f.to not in self._specs:
                    problems.add(f.origin, f"{spec.name}.{f.name}: ref to unknown entity {f.to!r}")
                    continue
                rname = f.reverse or spec.plural
                target = self._specs[f.to]
                key = (f.to, rname)
                clash = None
                if rname in target.fields or rname in RESERVED_FIELDS:
                    clash = target.fields[rname].origin if rname in target.fields else "the engine"
                elif key in reverse_origin:
                    clash = reverse_origin[key]
                if clash:
                    problems.add(
                        f.origin,
                        f"{spec.name}.{f.name}: reverse name {f.to}.{rname} clashes with {clash};"
                        " set `reverse:` to another name",
                    )
                    continue
                reverse_origin[key] = f.origin
                reverses[f.to][rname] = Reverse(rname, spec.name, f.name)
        problems.raise_if_any("the entity descriptions have problems")
        self._specs = {
            name: replace(spec, reverses=reverses[name]) for name, spec in self._specs.items()
        }
        self._final = True
        return self

    def _check_entity(self, spec: EntitySpec, problems: _Problems) -> None:
        for opt in ("owner_via", "parent"):
            ref_name = getattr(spec, opt)
            if ref_name is None:
                continue
            f = spec.fields.get(ref_name)
            if f is None or f.type != "ref":
                problems.add(spec.origin, f"{spec.name}: {opt} {ref_name!r} is not a ref field")
        if spec.owned and spec.owner_via:
            problems.add(spec.origin, f"{spec.name}: owned and owner_via exclude each other")
        for key in (*spec.duplicate_keys, *([spec.natural_key] if spec.natural_key else [])):
            if key not in spec.fields:
                problems.add(spec.origin, f"{spec.name}: {key!r} is not a field")
        if spec.natural_key and spec.natural_key in spec.fields:
            if not spec.fields[spec.natural_key].unique:
                problems.add(
                    spec.origin, f"{spec.name}: natural key {spec.natural_key!r} must be unique"
                )

    def _check_open(self) -> None:
        if self._final:
            raise RuntimeError("the entity registry is final once the database is mapped")

    # -- reading ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> EntitySpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[EntitySpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> EntitySpec | None:
        return self._specs.get(name)

    def referrers(self, entity: str) -> list[tuple[EntitySpec, FieldSpec]]:
        """Every (entity, ref field) that points at ``entity``, across all plugins."""
        return [(spec, f) for spec in self._specs.values() for f in spec.refs() if f.to == entity]
