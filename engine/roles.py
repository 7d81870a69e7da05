"""Roles: who may read, create, update and delete which records, and which fields they see.

Roles come from three places, in this order: the engine's own ``admin``, the roles plugins
contribute (``register_roles``), and the admin's ``$GUANXI_HOME/roles.yaml``, which adds
roles and replaces plugin roles of the same name. ``admin`` itself cannot be redefined: it
always has every right, so no file can lock the installation out of itself.

This module reads and checks the definitions (:func:`load_roles`); the permission policy of
the GraphQL layer enforces them. Every problem of every definition is collected and raised
together as one :class:`ConfigError` naming ``file:line`` (or ``plugin <name>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contributions import Contributions
from .errors import ConfigError, ConfigProblem
from .metadata import EntityRegistry
from .yamlload import load_yaml, where

__all__ = [
    "ADMIN",
    "EXPORT_SCOPES",
    "OPERATIONS",
    "ROLE_KEYS",
    "SCOPES",
    "RoleDef",
    "load_roles",
    "parse_roles_file",
]

#: The engine's own role; always every right on everything.
ADMIN = "admin"
OPERATIONS = ("read", "create", "update", "delete")
#: Which records an operation reaches, from nothing to everything.
SCOPES = ("none", "own", "team", "own_or_unowned", "team_or_unowned", "all")
EXPORT_SCOPES = ("none", "own", "team", "all")
ROLE_KEYS = frozenset(
    {"label", "labels", "description", "default", "entities", "hidden_fields", "export"}
)
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class RoleDef:
    """One role after loading.

    ``default`` and each ``entities`` entry map every operation of :data:`OPERATIONS` to a
    scope of :data:`SCOPES` (an entity entry is completed from ``default``).
    ``hidden_fields`` maps an entity to the fields this role may not see. ``origin`` is
    ``engine``, ``plugin <name>`` or ``file:line``.
    """

    name: str
    label: str
    origin: str
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    default: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, "none"))
    entities: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    hidden_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    export: str = "none"

    def scope(self, entity: str, operation: str) -> str:
        """The scope of ``operation`` (read, create, update, delete) on ``entity``."""
        return self.entities.get(entity, self.default)[operation]

    def hides(self, entity: str, field_name: str) -> bool:
        return field_name in self.hidden_fields.get(entity, frozenset())

    def label_in(self, language: str | None) -> str:
        return (self.labels.get(language) if language else None) or self.label


class _Problems(list[ConfigProblem]):
    def add(self, where: str | None, message: str) -> None:
        self.append(ConfigProblem(where, message))


def _scopes(
    raw: Any,
    base: Mapping[str, str],
    allowed: tuple[str, ...],
    at: str,
    what: str,
    problems: _Problems,
) -> dict[str, str]:
    """``{read: own, ...}`` completed from ``base``; bad operations or scopes are problems."""
    scopes = dict(base)
    if raw is None:
        return scopes
    if not isinstance(raw, Mapping):
        problems.add(at, f"{what} must map operations ({', '.join(OPERATIONS)}) to scopes")
        return scopes
    for operation, scope in raw.items():
        line = where(raw, operation, default=at)
        if operation not in OPERATIONS:
            problems.add(
                line, f"{what}: unknown operation {operation!r}; use {', '.join(OPERATIONS)}"
            )
        elif scope not in allowed:
            problems.add(
                line, f"{what}: unknown scope {scope!r} for {operation}; use {', '.join(allowed)}"
            )
        else:
            scopes[operation] = scope
    return scopes


def _labels(raw: Any, at: str, what: str, problems: _Problems) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        problems.add(at, f"{what}: labels must map a language code to a text, e.g. {{zh: 财务}}")
        return {}
    return dict(raw)


def parse_role(
    name: Any, raw: Any, origin: str, registry: EntityRegistry, problems: _Problems
) -> RoleDef | None:
    """One role definition (plain dict or located YAML mapping) -> RoleDef.

    ``origin`` names the definition (``plugin sales``, or ``file:line`` of the role's name);
    problems are added to ``problems`` at the ``file:line`` of the offending key when the
    definition carries lines, else at ``origin``. Returns None when it is unusable.
    """
    at = origin
    if not isinstance(name, str) or not _ROLE_NAME.match(name):
        problems.add(at, f"role name {name!r} must be snake_case (a-z, 0-9, _)")
        return None
    what = f"role {name}"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add(at, f"{what} must be a mapping (label, labels, default, entities, ...)")
        return None
    for key in raw:
        if key not in ROLE_KEYS:
            problems.add(
                where(raw, key, default=origin),
                f"{what}: unknown key {key!r}; use {', '.join(sorted(ROLE_KEYS))}",
            )
    label = raw.get("label", name.replace("_", " ").capitalize())
    if not isinstance(label, str):
        problems.add(where(raw, "label", default=origin), f"{what}: label must be a text")
        label = name
    description = raw.get("description") or ""
    if not isinstance(description, str):
        problems.add(where(raw, "description", default=origin), f"{what}: description is a text")
        description = ""
    default = _scopes(
        raw.get("default"),
        dict.fromkeys(OPERATIONS, "none"),
        SCOPES,
        where(raw, "default", default=origin),
        f"{what}: default",
        problems,
    )
    entities: dict[str, dict[str, str]] = {}
    raw_entities = raw.get("entities") or {}
    if not isinstance(raw_entities, Mapping):
        problems.add(
            where(raw, "entities", default=origin),
            f"{what}: entities must map entity names to scopes",
        )
        raw_entities = {}
    for entity, scopes in raw_entities.items():
        line = where(raw_entities, entity, default=origin)
        if entity not in registry:
            problems.add(line, f"{what}: unknown entity {entity!r}")
            continue
        entities[entity] = _scopes(scopes, default, SCOPES, line, f"{what}: {entity}", problems)
    hidden: dict[str, frozenset[str]] = {}
    raw_hidden = raw.get("hidden_fields") or {}
    if not isinstance(raw_hidden, Mapping):
        problems.add(
            where(raw, "hidden_fields", default=origin),
            f"{what}: hidden_fields must map entity names to lists of fields",
        )
        raw_hidden = {}
    for entity, names in raw_hidden.items():
        line = where(raw_hidden, entity, default=origin)
        spec = registry.get(entity) if isinstance(entity, str) else None
        if spec is None:
            problems.add(line, f"{what}: hidden_fields names unknown entity {entity!r}")
            continue
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.add(line, f"{what}: hidden_fields of {entity} must be a list of field names")
            continue
        unknown = [n for n in names if n not in spec.fields]
        if unknown:
            problems.add(line, f"{what}: {entity} has no field(s) {', '.join(map(repr, unknown))}")
        hidden[entity] = frozenset(n for n in names if n in spec.fields)
    export = raw.get("export", "none")
    if export not in EXPORT_SCOPES:
        problems.add(
            where(raw, "export", default=origin),
            f"{what}: unknown export scope {export!r}; use {', '.join(EXPORT_SCOPES)}",
        )
        export = "none"
    return RoleDef(
        name=name,
        label=label,
        origin=at,
        labels=_labels(raw.get("labels"), where(raw, "labels", default=origin), what, problems),
        description=description,
        default=default,
        entities=entities,
        hidden_fields=hidden,
        export=export,
    )


def parse_roles_file(
    path: Path, registry: EntityRegistry, problems: _Problems
) -> dict[str, RoleDef]:
    """The roles of an admin's ``roles.yaml``; problems are collected, not raised."""
    try:
        data = load_yaml(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return {}
    if data is None:
        return {}
    source = str(path)
    if not isinstance(data, Mapping):
        problems.add(f"{source}:1", "a roles file must be a mapping with a `roles:` key")
        return {}
    for key in data:
        if key != "roles":
            problems.add(where(data, key), f"unknown key {key!r}; a roles file has only `roles:`")
    raw_roles = data.get("roles") or {}
    if not isinstance(raw_roles, Mapping):
        problems.add(where(data, "roles"), "`roles:` must map role names to definitions")
        return {}
    roles: dict[str, RoleDef] = {}
    for name, raw in raw_roles.items():
        at = where(raw_roles, name)
        if name == ADMIN:
            problems.add(at, "role admin belongs to the engine and cannot be redefined")
            continue
        if raw is None:
            raw = {}
        role = parse_role(name, raw, at, registry, problems)
        if role is not None:
            roles[name] = role
    return roles


def load_roles(
    engine_roles: Contributions, admin_file: Path | None, registry: EntityRegistry
) -> dict[str, RoleDef]:
    """Every role of the installation by name: ``admin``, plugin roles, then the admin's.

    ``engine_roles`` are the collected ``role`` contributions (the engine's ``admin`` and
    the plugins'); ``admin_file`` is ``$GUANXI_HOME/roles.yaml`` (absent is fine). A role
    of ``admin_file`` replaces the plugin role of the same name. Raises ConfigError with
    every problem found when any definition is bad.
    """
    problems = _Problems()
    roles: dict[str, RoleDef] = {}
    for contribution in engine_roles:
        value = contribution.value
        if contribution.name == ADMIN and contribution.origin == "engine":
            # The engine's admin reaches everything, exports included.
            value = {"export": "all", **(value or {})}
        role = parse_role(contribution.name, value, contribution.origin, registry, problems)
        if role is not None:
            roles[role.name] = role
    if admin_file is not None and admin_file.exists():
        roles.update(parse_roles_file(admin_file, registry, problems))
    if problems:
        first = problems[0]
        raise ConfigError(
            first.message if len(problems) == 1 else "the role definitions have problems",
            where=first.where if len(problems) == 1 else None,
            problems=list(problems),
        )
    return roles
