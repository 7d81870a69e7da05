"""What plugins contribute besides entities: roles, workflow files, actions, conditions,
analytics, periodic jobs and demo data, collected once when the Engine is built.

Each contribution is kept with its origin (the plugin's name), and two plugins giving
the same name is a start-up error naming both - never a silent override.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from .errors import PluginError
from .plugins import call_with_origin

#: The one role the engine itself knows; business roles come from plugins.
ADMIN_ROLE = {
    "label": "System administrator",
    "labels": {"zh": "系统管理员"},
    "default": {"read": "all", "create": "all", "update": "all", "delete": "all"},
}


@dataclass(frozen=True)
class Contribution:
    """One named thing a plugin contributed; ``value`` depends on the kind."""

    name: str
    origin: str
    value: Any
    options: dict[str, Any] = field(default_factory=dict)


class Contributions:
    """Named contributions of one kind (e.g. every workflow action), by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Contribution] = {}

    def add(self, name: str, value: Any, origin: str, **options: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{origin}: a {self.kind} needs a name, got {name!r}")
        if name in self._items:
            raise PluginError(
                f"{self.kind} {name!r} is contributed twice: by {self._items[name].origin} "
                f"and by {origin}"
            )
        self._items[name] = Contribution(name, origin, value, dict(options))

    def __getitem__(self, name: str) -> Contribution:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Contribution]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)


def collect(pm: pluggy.PluginManager) -> dict[str, Contributions]:
    """Call every ``register_*`` hook except entities once and keep what they give."""
    found = {
        kind: Contributions(kind.replace("_", " "))
        for kind in (
            "role",
            "workflow_file",
            "action",
            "condition",
            "analytics",
            "periodic_job",
            "demo_data",
        )
    }

    def named(kind: str) -> Callable[[str], Callable[..., None]]:
        def for_plugin(plugin: str) -> Callable[..., None]:
            def register(name: str, value: Any = None, **options: Any) -> None:
                found[kind].add(name, value, f"plugin {plugin}", **options)

            return register

        return for_plugin

    def workflow_files(plugin: str) -> Callable[[Any], None]:
        def register(path: Any) -> None:
            found["workflow_file"].add(str(path), path, f"plugin {plugin}")

        return register

    def periodic(plugin: str) -> Callable[..., None]:
        def register(name: str, interval_seconds: float, function: Callable[..., Any]) -> None:
            if not interval_seconds or interval_seconds <= 0:
                raise PluginError(f"plugin {plugin}: periodic job {name!r} needs an interval > 0")
            found["periodic_job"].add(
                name, function, f"plugin {plugin}", interval_seconds=interval_seconds
            )

        return register

    found["role"].add("admin", ADMIN_ROLE, "engine")
    call_with_origin(pm, "register_roles", named("role"))
    call_with_origin(pm, "register_workflows", workflow_files)
    call_with_origin(pm, "register_actions", named("action"))
    call_with_origin(pm, "register_conditions", named("condition"))
    call_with_origin(pm, "register_analytics", named("analytics"))
    call_with_origin(pm, "register_periodic_jobs", periodic)
    call_with_origin(pm, "register_demo_data", named("demo_data"))
    return found
