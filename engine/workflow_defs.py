"""Workflow definitions: the YAML format, every check of it, and loading all workflows.

A workflow file binds one entity's state field to states and transitions (see
``docs/workflows.md``). :func:`read_workflow` turns one file into a :class:`WorkflowDef`
after checking everything a file can get wrong, collecting every problem with the
``file:line`` of the offending key; :func:`load_workflows` reads the shipped, plugin and
admin files of an engine and applies the replacement rules. Nothing here runs a workflow:
the runtime builds its machines from these definitions.

A definition reaches Python only through names: actions and conditions are looked up in
the engine's registries (built-in actions plus what plugins register), never imported.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ConfigProblem
from .metadata import BASE_FIELDS, OWNER_ENTITY, EntitySpec, FieldSpec, parse_field
from .validation import coerce
from .yamlload import LocatedDict, LocatedList, load_yaml, where

if TYPE_CHECKING:  # pragma: no cover - types only
    from .engine import Engine

__all__ = [
    "BUILTIN_ACTIONS",
    "ActionCall",
    "ConditionCall",
    "ParamSpec",
    "StateDef",
    "TimeoutDef",
    "TransitionDef",
    "WorkflowDef",
    "WorkflowSet",
    "check_workflow_file",
    "load_workflows",
    "parse_duration",
    "read_workflow",
    "to_dot",
    "to_mermaid",
]

WORKFLOW_KEYS = frozenset(
    "workflow label labels entity field initial renamed states transitions".split()
)
REQUIRED_WORKFLOW_KEYS = ("workflow", "entity", "field", "initial", "states")
STATE_KEYS = frozenset(
    "label labels final outcome probability rotten_after_days require on_enter on_exit"
    " timeout".split()
)
TRANSITION_KEYS = frozenset(
    "trigger label labels source dest roles conditions unless payload actions".split()
)
REQUIRED_TRANSITION_KEYS = ("trigger", "source", "dest")
TIMEOUT_KEYS = frozenset({"after", "trigger", "actions"})
OUTCOMES = ("won", "lost")
#: Duration units: ``45s``, ``30m``, ``12h``, ``14d``, ``2w``.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PARAM_TYPES = frozenset({"string", "int", "number", "bool", "map", "list", "any"})
#: Where workflow files shipped with guanxi live (package data of the top-level workflows/).
SHIPPED_PACKAGE = "guanxi.workflows"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DURATION = re.compile(r"^([1-9][0-9]*)\s*([smhdw])$")


# -- the definitions ------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One parameter of an action or condition: its type, whether required, its choices."""

    name: str
    type: str = "any"
    required: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ActionCall:
    """``{action: name, ...params}`` as written; ``where`` is ``file:line``."""

    name: str
    params: dict[str, Any]
    where: str


@dataclass(frozen=True)
class ConditionCall:
    """A condition by name (``example.amount_received`` or ``{condition: name, ...}``)."""

    name: str
    params: dict[str, Any]
    where: str


@dataclass(frozen=True)
class TimeoutDef:
    """After ``after_seconds`` in the state, fire ``trigger``, or run ``actions`` and stay."""

    after_seconds: int
    trigger: str | None
    actions: tuple[ActionCall, ...]
    after: str = ""
    where: str = ""


@dataclass(frozen=True)
class StateDef:
    name: str
    label: str
    labels: dict[str, str]
    final: bool
    outcome: str | None
    probability: float | None
    require: tuple[str, ...]
    on_enter: tuple[ActionCall, ...]
    on_exit: tuple[ActionCall, ...]
    timeout: TimeoutDef | None
    where: str
    #: days without activity after which a record in this state counts as rotten (stale);
    #: the engine keeps the number, plugins decide what activity is and what to do about it
    rotten_after_days: int | None = None


@dataclass(frozen=True)
class TransitionDef:
    """One transition; ``sources`` is expanded (``*`` = every non-final state but ``dest``)."""

    trigger: str
    label: str
    labels: dict[str, str]
    sources: tuple[str, ...]
    dest: str
    roles: tuple[str, ...]
    conditions: tuple[ConditionCall, ...]
    unless: tuple[ConditionCall, ...]
    payload: dict[str, FieldSpec]
    actions: tuple[ActionCall, ...]
    where: str

    @property
    def guarded(self) -> bool:
        return bool(self.roles or self.conditions or self.unless)


@dataclass(frozen=True)
class WorkflowDef:
    """One checked workflow. ``source`` is its file, ``origin`` ``shipped``, ``plugin
    <name>`` or ``admin``; ``version`` is the first 12 hex digits of the file's sha256."""

    name: str
    label: str
    labels: dict[str, str]
    entity: str
    field: str
    initial: str
    states: dict[str, StateDef]
    transitions: tuple[TransitionDef, ...]
    renamed: dict[str, str]
    source: str
    origin: str
    version: str

    def transitions_from(self, state: str) -> tuple[TransitionDef, ...]:
        return tuple(t for t in self.transitions if state in t.sources)

    @property
    def triggers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))


@dataclass(frozen=True)
class WorkflowSet:
    """What :func:`load_workflows` found: workflows by name and notices for a person."""

    workflows: dict[str, WorkflowDef]
    notices: tuple[str, ...] = ()


def parse_duration(text: Any) -> int:
    """``30m`` -> 1800. Units s, m, h, d, w; a positive whole number. ValueError otherwise."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"bad duration {text!r}: write a whole number and a unit, e.g. 45s, 30m, 12h, 14d, 2w"
        )
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


# -- actions and conditions the YAML may name ---------------------------------------------
#: The actions the engine provides itself (their runtime comes with the workflow runtime).
BUILTIN_ACTIONS: dict[str, dict[str, ParamSpec]] = {
    "set": {"fields": ParamSpec("fields", "map", required=True)},
    "create": {
        "entity": ParamSpec("entity", "string", required=True),
        "fields": ParamSpec("fields", "map"),
        "unless_exists": ParamSpec("unless_exists", "bool"),
    },
    "assign_owner": {"to": ParamSpec("to", "string", required=True)},
    "notify": {
        "to": ParamSpec("to", "string", required=True),
        "template": ParamSpec("template", "string", required=True),
    },
}


@dataclass(frozen=True)
class _Catalog:
    """The names a definition may use, with their parameter schemas."""

    registry: Any
    roles: frozenset[str]
    actions: dict[str, dict[str, ParamSpec]]
    conditions: dict[str, dict[str, ParamSpec]]
    currency: str


def _param_schema(
    kind: str, name: str, origin: str, raw: Any, problems: list[ConfigProblem]
) -> dict[str, ParamSpec]:
    """A plugin's ``params=`` schema -> ParamSpecs; an absent schema takes no parameters."""
    what = f"{origin}: {kind} {name!r}"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem(origin, f"{what}: params must map names to types"))
        return {}
    specs: dict[str, ParamSpec] = {}
    for pname, pspec in raw.items():
        if isinstance(pspec, str):
            pspec = {"type": pspec}
        if not isinstance(pname, str) or not isinstance(pspec, Mapping):
            problems.append(ConfigProblem(origin, f"{what}: bad parameter {pname!r}"))
            continue
        unknown = sorted(set(pspec) - {"type", "required", "choices", "description"})
        ptype = pspec.get("type", "any")
        if unknown or ptype not in PARAM_TYPES:
            problems.append(
                ConfigProblem(
                    origin,
                    f"{what}: parameter {pname!r} needs a type of {', '.join(sorted(PARAM_TYPES))}"
                    + (f" (unknown option(s) {', '.join(unknown)})" if unknown else ""),
                )
            )
            continue
        specs[pname] = ParamSpec(
            pname, ptype, bool(pspec.get("required", False)), tuple(pspec.get("choices") or ())
        )
    return specs


def _catalog(engine: Engine) -> tuple[_Catalog, list[ConfigProblem]]:
    problems: list[ConfigProblem] = []
    actions = dict(BUILTIN_ACTIONS)
    for item in engine.actions:
        if item.name in BUILTIN_ACTIONS:
            problems.append(
                ConfigProblem(item.origin, f"action {item.name!r} is built in; choose another name")
            )
            continue
        actions[item.name] = _param_schema(
            "action", item.name, item.origin, item.options.get("params"), problems
        )
    conditions = {
        item.name: _param_schema(
            "condition", item.name, item.origin, item.options.get("params"), problems
        )
        for item in engine.conditions
    }
    roles = getattr(engine, "role_defs", None)
    if roles is None:
        from .roles import load_roles

        roles = load_roles(engine.roles, engine.config.home / "roles.yaml", engine.registry)
    catalog = _Catalog(
        engine.registry, frozenset(roles), actions, conditions, engine.config.currency
    )
    return catalog, problems


# -- reading one file -------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """Located YAML data -> plain dicts and lists (definitions keep no YAML types)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _one_or_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _close(name: Any, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or `` (known: a, b)``, for unknown-name messages."""
    known = sorted(known)
    if isinstance(name, str):
        matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        if matches:
            return f" (did you mean {', '.join(map(repr, matches))}?)"
    if not known:
        return ""
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f" (known: {shown})"


@dataclass
class _Parsed:
    """The outcome of reading one file, before the cross-file rules of loading."""

    source: str
    origin: str
    workflow: WorkflowDef | None = None
    problems: list[ConfigProblem] = field(default_factory=list)
    name: str | None = None
    name_where: str = ""
    field_where: str = ""
    #: The entity named by the file when the engine does not know it.
    missing_entity: str | None = None


class _Reader:
    """Checks one workflow document and builds its definition; collects every problem."""

    def __init__(self, catalog: _Catalog, source: str) -> None:
        self.catalog = catalog
        self.source = source
        self.problems: list[ConfigProblem] = []
        self.spec: EntitySpec | None = None
        self.state_field: str | None = None

    def problem(self, at: str, message: str) -> None:
        self.problems.append(ConfigProblem(at, message))

    def keys(self, node: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                self.problem(
                    where(node, key),
                    f"{what}: unknown key {key!r}{_close(key, allowed)}",
                )

    def text(self, node: Mapping[str, Any], key: str, what: str, default: str) -> str:
        value = node.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.problem(where(node, key), f"{what}: {key} must be a non-empty text")
            return default
        return value

    def labels(self, node: Mapping[str, Any], what: str) -> dict[str, str]:
        value = node.get("labels")
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.problem(
                where(node, "labels"),
                f"{what}: labels must map a language to a text, e.g. {{zh: …}}",
            )
            return {}
        return dict(value)

    def names(self, node: Mapping[str, Any], key: str, what: str) -> list[str]:
        """A name or a list of names (sources, roles, require)."""
        value = node.get(key)
        if value is None:
            return []
        items = _one_or_list(value)
        if not all(isinstance(item, str) for item in items):
            self.problem(where(node, key), f"{what}: {key} must be a name or a list of names")
            return []
        return list(dict.fromkeys(items))

    # -- the document ---------------------------------------------------------------------
    def workflow(self, data: Any, origin: str, version: str) -> WorkflowDef | None:
        at_top = f"{self.source}:1"
        if not isinstance(data, LocatedDict):
            self.problem(
                at_top,
                "a workflow file must be a mapping with workflow, entity, field, initial, states",
            )
            return None
        self.keys(data, WORKFLOW_KEYS, "workflow")
        for key in REQUIRED_WORKFLOW_KEYS:
            if key not in data:
                self.problem(where(data), f"missing required key {key!r}")
        name = data.get("workflow")
        if "workflow" in data and (not isinstance(name, str) or not _NAME.match(name)):
            self.problem(where(data, "workflow"), f"workflow name {name!r} must be snake_case")
        what = f"workflow {name}"
        label = self.text(data, "label", what, str(name).replace("_", " ").capitalize())
        labels = self.labels(data, what)
        self.entity(data)
        states = self.states(data)
        initial = data.get("initial")
        if "initial" in data and states and not _declared(initial, states):
            self.problem(
                where(data, "initial"),
                f"initial state {initial!r} is not declared{_close(initial, states)}",
            )
        renamed = self.renamed(data, states)
        transitions = self.transitions(data, states)
        self.graph(states, transitions, initial)
        if self.problems:
            return None
        assert self.spec is not None and self.state_field is not None
        return WorkflowDef(
            name=name,
            label=label,
            labels=labels,
            entity=self.spec.name,
            field=self.state_field,
            initial=initial,
            states=states,
            transitions=tuple(transitions),
            renamed=renamed,
            source=self.source,
            origin=origin,
            version=version,
        )

    def entity(self, data: LocatedDict) -> None:
        entity = data.get("entity")
        registry = self.catalog.registry
        if "entity" in data:
            self.spec = registry.get(entity) if isinstance(entity, str) else None
            if self.spec is None:
                self.problem(
                    where(data, "entity"),
                    f"unknown entity {entity!r}{_close(entity, registry.names())}",
                )
        name = data.get("field")
        if "field" not in data:
            return
        if not isinstance(name, str) or not name:
            self.problem(where(data, "field"), f"field must be a field name, not {name!r}")
            return
        self.state_field = name
        if self.spec is None:
            return
        f = self.spec.fields.get(name)
        if f is None:
            # Not declared: the engine adds it as an enum of the states when the file is
            # installed (see wanted_state_fields), so a file checked on its own is fine.
            return
        elif f.type not in ("enum", "string"):
            self.problem(
                where(data, "field"),
                f"{self.spec.name}.{name} is a {f.type} field; a state field must be an enum or"
                " a string",
            )
            self.state_field = None

    def state_field_fits(self, data: LocatedDict, states: Mapping[str, StateDef]) -> None:
        if self.spec is None or self.state_field not in self.spec.fields:
            return
        f = self.spec.fields[self.state_field]
        at = where(data, "field")
        if f.type == "enum":
            missing = [s for s in states if s not in f.choice_values()]
            if missing:
                self.problem(
                    at,
                    f"{self.spec.name}.{f.name} has no choice(s) {', '.join(missing)}; an enum"
                    " state field needs every state among its choices",
                )
        elif f.column_length is not None:
            long = [s for s in states if len(s) > f.column_length]
            if long:
                self.problem(
                    at, f"state(s) {', '.join(long)} longer than {self.spec.name}.{f.name} allows"
                )

    # -- states -----------------------------------------------------------------------------
    def states(self, data: LocatedDict) -> dict[str, StateDef]:
        raw_states = data.get("states")
        if "states" not in data:
            return {}
        if not isinstance(raw_states, LocatedDict) or not raw_states:
            self.problem(where(data, "states"), "states must be a non-empty mapping of states")
            return {}
        states: dict[str, StateDef] = {}
        for name, raw in raw_states.items():
            at = where(raw_states, name)
            if not isinstance(name, str) or not _NAME.match(name):
                self.problem(at, f"state name {name!r} must be snake_case (a-z, 0-9, _)")
                continue
            if raw is None:
                raw = LocatedDict(self.source, raw_states.key_lines.get(name))
            if not isinstance(raw, LocatedDict):
                self.problem(at, f"state {name}: must be a mapping (label, final, ...)")
                continue
            states[name] = self.state(name, raw, at)
        self.state_field_fits(data, states)
        return states

    def state(self, name: str, raw: LocatedDict, at: str) -> StateDef:
        what = f"state {name}"
        self.keys(raw, STATE_KEYS, what)
        final = raw.get("final", False)
        if not isinstance(final, bool):
            self.problem(where(raw, "final"), f"{what}: final must be true or false")
            final = False
        outcome = raw.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            self.problem(where(raw, "outcome"), f"{what}: outcome must be won or lost")
        probability = raw.get("probability")
        if probability is not None and (
            isinstance(probability, bool)
            or not isinstance(probability, int | float)
            or not 0 <= probability <= 1
        ):
            self.problem(
                where(raw, "probability"), f"{what}: probability must be a number from 0 to 1"
            )
            probability = None
        rotten = raw.get("rotten_after_days")
        if rotten is not None and (
            isinstance(rotten, bool) or not isinstance(rotten, int) or rotten < 1
        ):
            self.problem(
                where(raw, "rotten_after_days"),
                f"{what}: rotten_after_days must be a whole number of days, at least 1",
            )
            rotten = None
        if rotten is not None and (final or outcome is not None):
            self.problem(
                where(raw, "rotten_after_days"),
                f"{what}: rotten_after_days is for open states; "
                "this one is final or has an outcome",
            )
            rotten = None
        require = self.names(raw, "require", what)
        if self.spec is not None:
            for f in require:
                if f not in self.spec.fields:
                    self.problem(
                        where(raw, "require"),
                        f"{what}: require names {f!r}, which is not a field of {self.spec.name}"
                        f"{_close(f, self.spec.fields)}",
                    )
        on_enter = self.actions(raw, "on_enter", what, None)
        on_exit = self.actions(raw, "on_exit", what, None)
        if final and on_exit:
            self.problem(where(raw, "on_exit"), f"{what}: a final state is never left")
        return StateDef(
            name=name,
            label=self.text(raw, "label", what, name.replace("_", " ").capitalize()),
            labels=self.labels(raw, what),
            final=final,
            outcome=outcome if outcome in OUTCOMES else None,
            probability=None if probability is None else float(probability),
            require=tuple(require),
            on_enter=on_enter,
            on_exit=on_exit,
            timeout=self.timeout(raw, what),
            where=at,
            rotten_after_days=rotten,
        )

    def timeout(self, state: LocatedDict, what: str) -> TimeoutDef | None:
        raw = state.get("timeout")
        if raw is None:
            return None
        at = where(state, "timeout")
        if not isinstance(raw, LocatedDict):
            self.problem(at, f"{what}: timeout must be {{after: 14d, trigger: name}}")
            return None
        self.keys(raw, TIMEOUT_KEYS, f"{what}: timeout")
        seconds = 0
        if "after" not in raw:
            self.problem(at, f"{what}: timeout needs `after` (e.g. 14d)")
        else:
            try:
                seconds = parse_duration(raw["after"])
            except ValueError as exc:
                self.problem(where(raw, "after"), f"{what}: timeout: {exc}")
        trigger = raw.get("trigger")
        if trigger is not None and not isinstance(trigger, str):
            self.problem(where(raw, "trigger"), f"{what}: timeout trigger must be a trigger name")
            trigger = None
        if "trigger" in raw and "actions" in raw:
            self.problem(at, f"{what}: a timeout has either `trigger` or `actions`, not both")
        elif "trigger" not in raw and "actions" not in raw:
            self.problem(at, f"{what}: a timeout needs `trigger` (a transition) or `actions`")
        actions = self.actions(raw, "actions", f"{what}: timeout", None)
        return TimeoutDef(seconds, trigger, actions, str(raw.get("after", "")), at)

    def renamed(self, data: LocatedDict, states: Mapping[str, StateDef]) -> dict[str, str]:
        raw = data.get("renamed")
        if raw is None:
            return {}
        if not isinstance(raw, LocatedDict):
            self.problem(where(data, "renamed"), "renamed must map old state names to states")
            return {}
        renamed: dict[str, str] = {}
        for old, new in raw.items():
            at = where(raw, old)
            if old in states:
                self.problem(at, f"renamed: {old!r} is still a declared state")
            elif not _declared(new, states):
                self.problem(
                    at, f"renamed: {old!r} maps to undeclared state {new!r}{_close(new, states)}"
                )
            else:
                renamed[str(old)] = new
        return renamed

    # -- transitions ------------------------------------------------------------------------
    def transitions(self, data: LocatedDict, states: Mapping[str, StateDef]) -> list[TransitionDef]:
        raw_list = data.get("transitions")
        if raw_list is None:
            return []
        if not isinstance(raw_list, LocatedList):
            self.problem(where(data, "transitions"), "transitions must be a list")
            return []
        result = []
        for raw in raw_list:
            if not isinstance(raw, LocatedDict):
                self.problem(where(raw_list), "each transition must be a mapping with a trigger")
                continue
            transition = self.transition(raw, states)
            if transition is not None:
                result.append(transition)
        return result

    def transition(self, raw: LocatedDict, states: Mapping[str, StateDef]) -> TransitionDef | None:
        trigger = raw.get("trigger")
        what = f"transition {trigger}"
        at = where(raw, "trigger") if "trigger" in raw else where(raw)
        self.keys(raw, TRANSITION_KEYS, what)
        for key in REQUIRED_TRANSITION_KEYS:
            if key not in raw:
                self.problem(where(raw), f"{what}: missing required key {key!r}")
        if "trigger" in raw and (not isinstance(trigger, str) or not _NAME.match(trigger)):
            self.problem(at, f"trigger name {trigger!r} must be snake_case")
        dest = raw.get("dest")
        if "dest" in raw and states and not _declared(dest, states):
            self.problem(
                where(raw, "dest"),
                f"{what}: dest {dest!r} is not a declared state{_close(dest, states)}",
            )
        sources = self.sources(raw, states, dest, what)
        roles = self.names(raw, "roles", what)
        for role in roles:
            if role not in self.catalog.roles:
                self.problem(
                    where(raw, "roles"),
                    f"{what}: unknown role {role!r}{_close(role, self.catalog.roles)}",
                )
        payload = self.payload(raw, what)
        transition = TransitionDef(
            trigger=trigger if isinstance(trigger, str) else "",
            label=self.text(raw, "label", what, str(trigger).replace("_", " ").capitalize()),
            labels=self.labels(raw, what),
            sources=tuple(sources),
            dest=dest if isinstance(dest, str) else "",
            roles=tuple(roles),
            conditions=self.conditions(raw, "conditions", what),
            unless=self.conditions(raw, "unless", what),
            payload=payload,
            # the declared keys, so a badly typed payload field is reported only once
            actions=self.actions(raw, "actions", what, _keys(raw.get("payload"))),
            where=at,
        )
        return transition

    def sources(
        self, raw: LocatedDict, states: Mapping[str, StateDef], dest: Any, what: str
    ) -> list[str]:
        if "source" not in raw:
            return []
        at = where(raw, "source")
        names = self.names(raw, "source", what)
        if "*" in names:
            if len(names) > 1:
                self.problem(at, f"{what}: `*` stands alone, not in a list of sources")
            return [s for s, d in states.items() if not d.final and s != dest]
        for name in names:
            if name not in states:
                if states:
                    self.problem(
                        at,
                        f"{what}: source {name!r} is not a declared state{_close(name, states)}",
                    )
            elif states[name].final:
                self.problem(
                    at, f"{what}: leaves final state {name!r}; nothing leaves a final state"
                )
        return names

    def payload(self, raw: LocatedDict, what: str) -> dict[str, FieldSpec]:
        value = raw.get("payload")
        if value is None:
            return {}
        if not isinstance(value, LocatedDict):
            self.problem(where(raw, "payload"), f"{what}: payload must map keys to field types")
            return {}
        fields: dict[str, FieldSpec] = {}
        for key, description in value.items():
            at = where(value, key)
            spec = parse_field(key, description, at, _Prefixed(self, f"{what}: payload"))
            if spec is None:
                continue
            if spec.type == "ref" and spec.to not in self.catalog.registry:
                self.problem(at, f"{what}: payload {key!r} refers to unknown entity {spec.to!r}")
            fields[key] = spec
        return fields

    # -- actions and conditions ------------------------------------------------------------
    def conditions(self, raw: LocatedDict, key: str, what: str) -> tuple[ConditionCall, ...]:
        return tuple(ConditionCall(*call) for call in self.named_calls(raw, key, what, "condition"))

    def actions(
        self, raw: LocatedDict, key: str, what: str, payload: set[str] | None
    ) -> tuple[ActionCall, ...]:
        """``payload`` holds the transition's payload keys, None outside a transition."""
        return tuple(
            ActionCall(*call) for call in self.named_calls(raw, key, what, "action", payload)
        )

    def named_calls(
        self, raw: LocatedDict, key: str, what: str, kind: str, payload: set[str] | None = None
    ) -> list[tuple[str, dict[str, Any], str]]:
        """(name, params, where) of each checked ``kind`` (action or condition) call."""
        if raw.get(key) is None:
            return []
        known = self.catalog.actions if kind == "action" else self.catalog.conditions
        found = []
        for item, at in self.calls(raw, key, kind):
            name, params = self.call(item, kind, at, what)
            if name is None:
                continue
            schema = known.get(name)
            if schema is None:
                whose = (
                    "built-in and registered actions"
                    if kind == "action"
                    else ("conditions that plugins register")
                )
                self.problem(
                    at,
                    f"{what}: unknown {kind} {name!r}; workflow YAML can only name {whose}"
                    f"{_close(name, known) or f' (no loaded plugin registers any {kind})'}",
                )
                continue
            fits = self.params(f"{kind} {name}", item, params, schema, at, what)
            if fits and kind == "action" and name in BUILTIN_ACTIONS:
                getattr(self, f"builtin_{name}")(item, params, at, f"{what}: {name}", payload)
            found.append((name, _plain(params), at))
        return found

    def calls(self, raw: LocatedDict, key: str, kind: str) -> Iterator[tuple[Any, str]]:
        """Each call of ``raw[key]`` (one or a list) with the line of its name."""
        for item in _one_or_list(raw[key]):
            if isinstance(item, LocatedDict):
                yield item, where(item, kind) if kind in item else where(item)
            else:
                yield item, where(raw, key)

    def call(
        self, item: Any, kind: str, at: str, what: str
    ) -> tuple[str | None, Mapping[str, Any]]:
        if isinstance(item, str):
            return item, {}
        if isinstance(item, LocatedDict) and isinstance(item.get(kind), str):
            return item[kind], {k: v for k, v in item.items() if k != kind}
        self.problem(
            at, f"{what}: write a {kind} as a name or as {{{kind}: name, parameter: value}}"
        )
        return None, {}

    def params(
        self,
        label: str,
        item: Any,
        params: Mapping[str, Any],
        schema: Mapping[str, ParamSpec],
        at: str,
        what: str,
    ) -> bool:
        """Check ``params`` against ``schema``; True when they fit."""
        before = len(self.problems)
        for key, value in params.items():
            spec = schema.get(key)
            key_at = where(item, key, default=at)
            if spec is None:
                takes = ", ".join(schema) or "no parameters"
                self.problem(key_at, f"{what}: {label}: unknown parameter {key!r} (takes {takes})")
            elif not _fits(spec.type, value):
                self.problem(key_at, f"{what}: {label}: parameter {key!r} must be a {spec.type}")
            elif spec.choices and value not in spec.choices:
                self.problem(
                    key_at,
                    f"{what}: {label}: parameter {key!r} must be one of "
                    f"{', '.join(map(str, spec.choices))}",
                )
        for spec in schema.values():
            if spec.required and spec.name not in params:
                self.problem(at, f"{what}: {label}: missing required parameter {spec.name!r}")
        return len(self.problems) == before

    # -- built-in actions: checks beyond their parameter types -------------------------------
    def builtin_set(self, item: Any, params: Mapping[str, Any], at: str, what: str, payload):
        if self.spec is not None:
            self.assignments(self.spec, params["fields"], what, payload, at)

    def builtin_create(self, item: Any, params: Mapping[str, Any], at: str, what: str, payload):
        target = self.catalog.registry.get(params["entity"])
        if target is None:
            self.problem(
                where(item, "entity", default=at),
                f"{what}: unknown entity {params['entity']!r}"
                f"{_close(params['entity'], self.catalog.registry.names())}",
            )
            return
        fields = params.get("fields") or {}
        self.assignments(target, fields, what, payload, at)
        missing = [
            f.name for f in target if f.required and f.default is None and f.name not in fields
        ]
        if missing:
            self.problem(
                where(item, "fields", default=at),
                f"{what}: {target.name} needs value(s) for required field(s) {', '.join(missing)}",
            )

    def builtin_assign_owner(self, item: Any, params: Mapping[str, Any], at, what, payload):
        to = params["to"]
        to_at = where(item, "to", default=at)
        if self.spec is None:
            return
        if "owner" not in self.spec.fields:
            self.problem(at, f"{what}: {self.spec.name} has no owner (it is not `owned: true`)")
        if to == "actor" or (to.startswith("user:") and len(to) > 5):
            return
        f = self.spec.fields.get(to)
        if f is None or f.type != "ref" or f.to != OWNER_ENTITY:
            self.problem(
                to_at,
                f"{what}: to must be actor, user:<name> or a ref field of {self.spec.name} that"
                f" points at {OWNER_ENTITY}, not {to!r}",
            )

    def builtin_notify(self, item: Any, params: Mapping[str, Any], at, what, payload):
        to = params["to"]
        to_at = where(item, "to", default=at)
        if to == "owner":
            if self.spec is not None and "owner" not in self.spec.fields:
                self.problem(to_at, f"{what}: {self.spec.name} records have no owner to notify")
        elif to.startswith("role:"):
            role = to[5:]
            if role not in self.catalog.roles:
                self.problem(
                    to_at, f"{what}: unknown role {role!r}{_close(role, self.catalog.roles)}"
                )
        elif not (to == "actor" or (to.startswith("user:") and len(to) > 5)):
            self.problem(to_at, f"{what}: to must be owner, actor, role:<role> or user:<name>")
        if not params["template"].strip():
            self.problem(where(item, "template", default=at), f"{what}: template is empty")

    def assignments(
        self,
        target: EntitySpec,
        fields: Mapping[str, Any],
        what: str,
        payload: set[str] | None,
        at: str,
    ) -> None:
        """``{field: value}`` of set/create: fields of ``target``; values see the docs."""
        for name, value in fields.items():
            key_at = where(fields, name, default=at)
            f = target.fields.get(name)
            if f is None:
                self.problem(
                    key_at,
                    f"{what}: {name!r} is not a field of {target.name}"
                    f"{_close(name, target.fields)}",
                )
                continue
            if f.internal:
                self.problem(key_at, f"{what}: {target.name}.{name} is internal")
                continue
            if self.spec is not None and target.name == self.spec.name and name == self.state_field:
                self.problem(key_at, f"{what}: only transitions move the state field {name!r}")
                continue
            self.value(f, target, value, what, payload, key_at)

    def value(
        self,
        f: FieldSpec,
        target: EntitySpec,
        value: Any,
        what: str,
        payload: set[str] | None,
        at: str,
    ) -> None:
        into = f"{target.name}.{f.name}"
        if isinstance(value, str) and value.startswith("record."):
            name = value[len("record.") :]
            if self.spec is not None and name not in self.spec.fields and name not in BASE_FIELDS:
                self.problem(
                    at,
                    f"{what}: {value!r}: {self.spec.name} has no field {name!r}"
                    f"{_close(name, self.spec.fields)}",
                )
        elif isinstance(value, str) and value.startswith("payload."):
            key = value[len("payload.") :]
            if payload is None:
                self.problem(
                    at, f"{what}: {value!r}: payload exists only in a transition's actions"
                )
            elif key not in payload:
                self.problem(
                    at,
                    f"{what}: {value!r}: the transition declares no payload key {key!r}"
                    f"{_close(key, payload)}",
                )
        elif value == "actor":
            if not (f.type == "ref" and f.to == OWNER_ENTITY):
                self.problem(
                    at, f"{what}: {into} cannot hold the actor: it is not a ref to {OWNER_ENTITY}"
                )
        elif value == "now":
            if f.type != "datetime":
                self.problem(at, f"{what}: {into} is a {f.type} field; now needs a datetime")
        else:
            try:
                coerce(f, _plain(value), self.catalog.currency)
            except (ValueError, TypeError) as exc:
                self.problem(at, f"{what}: {into} {exc}")

    # -- the graph ---------------------------------------------------------------------------
    def graph(
        self, states: Mapping[str, StateDef], transitions: list[TransitionDef], initial: Any
    ) -> None:
        """Reachability, ways out, timeout triggers and ambiguous triggers."""
        if not states:
            return
        for state in states.values():
            timeout = state.timeout
            if timeout is None or timeout.trigger is None:
                continue
            if not any(
                t.trigger == timeout.trigger and state.name in t.sources for t in transitions
            ):
                self.problem(
                    timeout.where,
                    f"state {state.name}: timeout trigger {timeout.trigger!r} is not a transition"
                    f" from {state.name!r}",
                )
        for state in states.values():
            if not state.final and not any(state.name in t.sources for t in transitions):
                self.problem(
                    state.where,
                    f"state {state.name} is not final and has no transition out of it"
                    " (add one, or mark it `final: true`)",
                )
        if _declared(initial, states):
            reached = {initial}
            frontier = [initial]
            while frontier:
                state = frontier.pop()
                for t in transitions:
                    if state in t.sources and t.dest in states and t.dest not in reached:
                        reached.add(t.dest)
                        frontier.append(t.dest)
            for state in states.values():
                if state.name not in reached:
                    self.problem(
                        state.where,
                        f"state {state.name} cannot be reached from the initial state {initial!r}",
                    )
        self.ambiguous(transitions)

    def ambiguous(self, transitions: list[TransitionDef]) -> None:
        """A trigger from one state whose earlier transition always wins makes the later one
        dead: an earlier transition without guards, or one with the very same guards."""
        for index, later in enumerate(transitions):
            for earlier in transitions[:index]:
                if earlier.trigger != later.trigger:
                    continue
                shared = [s for s in later.sources if s in earlier.sources]
                if not shared:
                    continue
                if not earlier.guarded or _guard(earlier) == _guard(later):
                    why = (
                        "has no roles or conditions"
                        if not earlier.guarded
                        else ("has the same roles and conditions")
                    )
                    line = earlier.where.rsplit(":", 1)[-1]
                    self.problem(
                        later.where,
                        f"trigger {later.trigger!r} from state {shared[0]!r}: the transition at"
                        f" line {line} {why}, so this one can never fire",
                    )
                    break


class _Prefixed:
    """A problem collector for ``metadata.parse_field`` that says what the field is for."""

    def __init__(self, reader: _Reader, prefix: str) -> None:
        self.reader = reader
        self.prefix = prefix

    def add(self, at: str | None, message: str) -> None:
        self.reader.problems.append(ConfigProblem(at, f"{self.prefix}: {message}"))


def _keys(value: Any) -> set[str]:
    return {k for k in value if isinstance(k, str)} if isinstance(value, Mapping) else set()


def _declared(name: Any, states: Mapping[str, StateDef]) -> bool:
    return isinstance(name, str) and name in states


def _guard(t: TransitionDef) -> tuple[Any, ...]:
    def calls(items: tuple[ConditionCall, ...]) -> tuple[tuple[str, str], ...]:
        return tuple(
            sorted((c.name, json.dumps(c.params, sort_keys=True, default=str)) for c in items)
        )

    return (frozenset(t.roles), calls(t.conditions), calls(t.unless))


def _fits(ptype: str, value: Any) -> bool:
    if ptype == "any":
        return True
    if ptype == "string":
        return isinstance(value, str)
    if ptype == "bool":
        return isinstance(value, bool)
    if ptype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if ptype == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if ptype == "map":
        return isinstance(value, Mapping)
    return isinstance(value, list)


def _read(path: str | os.PathLike[str], catalog: _Catalog, origin: str) -> _Parsed:
    source = os.fsdecode(path)
    parsed = _Parsed(source, origin)
    try:
        data = load_yaml(source)
    except ConfigError as exc:
        parsed.problems.extend(exc.problems)
        return parsed
    version = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12]
    if isinstance(data, LocatedDict):
        name = data.get("workflow")
        parsed.name = name if isinstance(name, str) else None
        parsed.name_where = where(data, "workflow")
        parsed.field_where = where(data, "field")
        entity = data.get("entity")
        if isinstance(entity, str) and entity not in catalog.registry:
            parsed.missing_entity = entity
    reader = _Reader(catalog, source)
    parsed.workflow = reader.workflow(data, origin, version)
    parsed.problems.extend(reader.problems)
    return parsed


def read_workflow(
    path: str | os.PathLike[str], engine: Engine, origin: str = "admin"
) -> tuple[WorkflowDef | None, list[ConfigProblem]]:
    """Read and check one workflow file against ``engine``'s entities, roles, actions and
    conditions. Returns the definition (None when there is any problem) and every problem."""
    catalog, problems = _catalog(engine)
    parsed = _read(path, catalog, origin)
    return parsed.workflow, problems + parsed.problems


def check_workflow_file(path: str | os.PathLike[str], engine: Engine) -> list[ConfigProblem]:
    """Every problem of one workflow file, each naming ``file:line``; empty when it is good.

    Besides the checks of the file itself, a workflow binding an entity field that another
    loaded workflow already binds is a problem.
    """
    catalog, problems = _catalog(engine)
    parsed = _read(path, catalog, "admin")
    problems += parsed.problems
    workflow = parsed.workflow
    if workflow is None:
        return problems
    for other in getattr(engine, "workflows", {}).values():
        same_file = Path(other.source).resolve() == Path(workflow.source).resolve()
        if same_file or other.name == workflow.name:
            continue
        if (other.entity, other.field) == (workflow.entity, workflow.field):
            problems.append(
                ConfigProblem(
                    parsed.field_where,
                    f"{workflow.entity}.{workflow.field} is already bound by workflow"
                    f" {other.name} ({other.source})",
                )
            )
    return problems


# -- loading every workflow of an engine ----------------------------------------------------
def _shipped_files() -> Iterator[tuple[str, Path]]:
    try:
        folder = resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:  # pragma: no cover - a broken install
        return
    entries = sorted(
        (e for e in folder.iterdir() if e.name.endswith((".yaml", ".yml"))), key=lambda e: e.name
    )
    for entry in entries:
        with resources.as_file(entry) as path:
            yield "shipped", path


def _workflow_sources(engine: Engine) -> Iterator[tuple[str, Path]]:
    """(origin, file) of every workflow: shipped, then plugins', then the admin's."""
    yield from _shipped_files()
    for item in engine.workflow_files:
        value = item.value if item.value is not None else item.name
        if isinstance(value, str | os.PathLike):
            yield item.origin, Path(value)
        else:  # an importlib.resources Traversable
            with resources.as_file(value) as path:
                yield item.origin, path
    for path in engine.admin_files("workflows"):
        yield "admin", path


def load_workflows(engine: Engine) -> WorkflowSet:
    """Read every workflow of ``engine``: shipped files (``guanxi.workflows``), plugin files
    (``register_workflows``) and ``$GUANXI_HOME/workflows/*.yaml``.

    An admin workflow named like a shipped or plugin one replaces it (a notice says so); a
    workflow whose entity is not loaded is skipped with a notice. Two shipped or plugin
    workflows with one name, two admin workflows with one name, two workflows binding one
    entity field, or any problem of a file that is used raises one ConfigError listing
    every problem.
    """
    catalog, problems = _catalog(engine)
    notices: list[str] = []
    by_name: dict[str, list[_Parsed]] = {}
    for origin, path in _workflow_sources(engine):
        parsed = _read(path, catalog, origin)
        if parsed.missing_entity is not None:
            notices.append(
                f"workflow {parsed.name or '?'} ({parsed.source}) skipped: its entity"
                f" {parsed.missing_entity} is not loaded (is its plugin disabled?)"
            )
        elif parsed.name is None:
            problems.extend(parsed.problems)
        else:
            by_name.setdefault(parsed.name, []).append(parsed)
    chosen: list[_Parsed] = []
    for name, group in by_name.items():
        admins = [p for p in group if p.origin == "admin"]
        shipped = [p for p in group if p.origin != "admin"]
        for same in (admins, shipped):
            for extra in same[1:]:
                problems.append(
                    ConfigProblem(
                        extra.name_where,
                        f"workflow {name} is defined twice: in {same[0].source} and in"
                        f" {extra.source}",
                    )
                )
        winner = admins[0] if admins else shipped[0]
        if admins and shipped:
            notices.append(
                f"workflow {name}: {winner.source} replaces the one of {shipped[0].origin}"
                f" ({shipped[0].source})"
            )
        problems.extend(winner.problems)
        chosen.append(winner)
    bound: dict[tuple[str, str], WorkflowDef] = {}
    workflows: dict[str, WorkflowDef] = {}
    for parsed in chosen:
        workflow = parsed.workflow
        if workflow is None:
            continue
        key = (workflow.entity, workflow.field)
        if key in bound:
            problems.append(
                ConfigProblem(
                    parsed.field_where,
                    f"{workflow.entity}.{workflow.field} is bound by two workflows:"
                    f" {bound[key].name} ({bound[key].source}) and {workflow.name}",
                )
            )
            continue
        bound[key] = workflow
        workflows[workflow.name] = workflow
    if problems:
        first = problems[0]
        raise ConfigError(
            first.message if len(problems) == 1 else "the workflow definitions have problems",
            where=first.where if len(problems) == 1 else None,
            problems=problems,
        )
    return WorkflowSet(workflows, tuple(notices))


# -- diagrams -------------------------------------------------------------------------------
def _edges(workflow: WorkflowDef) -> Iterator[tuple[str, str, str]]:
    """(source, dest, label) of every transition and every stay-put timeout."""
    for t in workflow.transitions:
        for source in t.sources:
            timeout = workflow.states[source].timeout
            label = t.trigger
            if timeout is not None and timeout.trigger == t.trigger:
                label += f" (after {timeout.after})"
            yield source, t.dest, label
    for state in workflow.states.values():
        if state.timeout is not None and state.timeout.trigger is None:
            yield state.name, state.name, f"after {state.timeout.after}"


def to_mermaid(workflow: WorkflowDef) -> str:
    """The workflow as a mermaid ``stateDiagram-v2``."""

    def text(value: str) -> str:
        return value.replace('"', "'").replace("\n", " ")

    lines = ["stateDiagram-v2"]
    for state in workflow.states.values():
        lines.append(f'    state "{text(state.label)}" as {state.name}')
    lines.append(f"    [*] --> {workflow.initial}")
    for source, dest, label in _edges(workflow):
        lines.append(f"    {source} --> {dest} : {text(label)}")
    for state in workflow.states.values():
        if state.final:
            lines.append(f"    {state.name} --> [*]")
    return "\n".join(lines) + "\n"


def to_dot(workflow: WorkflowDef) -> str:
    """The workflow as a graphviz ``digraph``."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"digraph {quoted(workflow.name)} {{",
        "    rankdir=LR;",
        "    node [shape=box, style=rounded];",
        '    "__start" [shape=point, label=""];',
    ]
    for state in workflow.states.values():
        extra = ", peripheries=2" if state.final else ""
        lines.append(f"    {quoted(state.name)} [label={quoted(state.label)}{extra}];")
    lines.append(f'    "__start" -> {quoted(workflow.initial)};')
    for source, dest, label in _edges(workflow):
        lines.append(f"    {quoted(source)} -> {quoted(dest)} [label={quoted(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- state fields the entities must have ----------------------------------------------------
@dataclass(frozen=True)
class StateField:
    """A state field some workflow file binds, with every state it names (for an enum)."""

    entity: str
    field: str
    states: dict[str, dict[str, Any]]
    where: str


def wanted_state_fields(engine: Engine) -> list[StateField]:
    """The ``entity.field`` each workflow file binds, read before the entities are final.

    The engine adds a missing state field as an enum of the states, so a workflow can bind
    an entity that does not declare one. Files that cannot be read are passed over here:
    :func:`load_workflows` reports their problems with file:line afterwards.
    """
    found: dict[tuple[str, str], StateField] = {}
    for _origin, path in _workflow_sources(engine):
        try:
            data = load_yaml(path)
        except ConfigError:
            continue
        if not isinstance(data, dict):
            continue
        entity, name, states = data.get("entity"), data.get("field"), data.get("states")
        if not (isinstance(entity, str) and isinstance(name, str) and isinstance(states, dict)):
            continue
        choices = {
            str(state): {
                "label": str(body.get("label") or state) if isinstance(body, dict) else str(state),
                "labels": dict(body.get("labels") or {}) if isinstance(body, dict) else {},
            }
            for state, body in states.items()
        }
        key = (entity, name)
        if key in found:
            found[key].states.update(choices)
        else:
            found[key] = StateField(entity, name, choices, where(data, "field"))
    return list(found.values())
