"""The plugin host: finds plugins, loads them once, checks them, and calls their hooks.

Shipped and outside plugins are found the same way - the entry-point group ``guanxi`` -
and loaded only by :func:`load_plugins`, never as a side effect of an import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import hookspecs
from .config import Config
from .errors import PluginError

GROUP = "guanxi"


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin: where it came from and what it implements."""

    name: str
    version: str
    core: bool
    requires: tuple[str, ...]
    hooks: tuple[str, ...] = field(default=())
    module: str = ""


def _plugin_name(plugin: Any) -> str:
    name = getattr(plugin, "name", None) or getattr(plugin, "__name__", "")
    return str(name).rsplit(".", 1)[-1]


def load_plugins(
    config: Config,
    *,
    extra: Sequence[Any] = (),
    use_entry_points: bool = True,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Load the installed plugins (entry points) and ``extra`` ones (tests, embedding).

    ``config.plugins`` (``GUANXI_PLUGINS``) limits the business plugins; core plugins
    always load. A plugin's ``requires`` must all be loaded, and every hook
    implementation must match a spec, or a :class:`PluginError` says which and why.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    found: list[tuple[str, Callable[[], Any], str]] = []
    if use_entry_points:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            found.append((ep.name, _loader(ep), _version(ep)))
    for plugin in extra:
        found.append((_plugin_name(plugin), lambda p=plugin: p, "test"))
    names = [name for name, _, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PluginError(f"two plugins are both named {', '.join(duplicates)}")
    wanted = set(config.plugins) if config.plugins is not None else None
    if wanted is not None and wanted - set(names):
        missing = ", ".join(sorted(wanted - set(names)))
        raise PluginError(
            f"GUANXI_PLUGINS names {missing}, which is not installed "
            f"(installed: {', '.join(sorted(names)) or 'none'})"
        )
    infos: list[PluginInfo] = []
    for name, load, version in found:
        plugin = load()
        core = bool(getattr(plugin, "core", False))
        if wanted is not None and not core and name not in wanted:
            continue
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name}: {exc}") from exc
        infos.append(
            PluginInfo(
                name=name,
                version=version,
                core=core,
                requires=tuple(getattr(plugin, "requires", ())),
                hooks=tuple(sorted(impl_names(pm, plugin))),
                module=getattr(plugin, "__name__", type(plugin).__name__),
            )
        )
    loaded = {info.name for info in infos}
    for info in infos:
        for needed in info.requires:
            if needed not in loaded:
                raise PluginError(
                    f"plugin {info.name} needs plugin {needed}, which is not loaded"
                    + (" (check GUANXI_PLUGINS)" if wanted is not None else "")
                )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {exc.plugin_name if hasattr(exc, 'plugin_name') else ''}: {exc} "
            "(a misspelt hook name? see docs/plugins.md)"
        ) from exc
    return pm, infos


def impl_names(pm: pluggy.PluginManager, plugin: Any) -> Iterable[str]:
    """Names of the hooks ``plugin`` implements."""
    for caller in pm.get_hookcallers(plugin) or []:
        yield caller.name


def _loader(ep: EntryPoint) -> Callable[[], Any]:
    def load() -> Any:
        try:
            return ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name} ({ep.value}) failed to load: {exc}") from exc

    return load


def _version(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else "unknown"


def call_with_origin(
    pm: pluggy.PluginManager,
    hook_name: str,
    make_callback: Callable[[str], Callable[..., Any]],
    argument: str = "register",
) -> None:
    """Call ``hook_name`` on each plugin with a callback that knows the plugin's name.

    Contributions then carry their origin (``plugin sales``), so an error can name who
    declared what.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order
        impl.function(**{argument: make_callback(impl.plugin_name)})


class EntityHooks:
    """The callers of :data:`~.hookspecs.ENTITY_HOOKS` for one entity: only the
    implementations that act on it (see :func:`~.hookspecs.for_entities`), or None when
    none does - worked out once per hook and entity, as plugins are registered at
    start-up."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._callers: dict[tuple[str, str], Any] = {}

    def __call__(self, name: str, entity: str) -> Any:
        key = (name, entity)
        try:
            return self._callers[key]
        except KeyError:
            pass
        if name not in hookspecs.ENTITY_HOOKS:
            raise ValueError(f"{name} is not a hook called for one entity's records")
        caller = getattr(self.pm.hook, name)
        impls = caller.get_hookimpls()
        skip = [
            impl.plugin
            for impl in impls
            if entity not in getattr(impl.function, hookspecs.ENTITIES_ATTRIBUTE, (entity,))
        ]
        if len(skip) == len(impls):
            found = None
        elif skip:
            found = self.pm.subset_hook_caller(name, skip)
        else:
            found = caller
        self._callers[key] = found
        return found
