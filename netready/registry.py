"""Probes and collectors, found by name through their entry points.

A plugin declares itself with ``netready.plugin.Plugin`` (``PLUGIN = Plugin(...)`` in its
module) and registers with one line in its package's ``pyproject.toml``::

    [project.entry-points."netready.probes"]        # collectors: "netready.collectors"
    rtt = "netready.probes.rtt:PLUGIN"

Built-ins register exactly so (netready's own pyproject.toml); a third-party package does the
same in its own. ``names(kind)`` lists the registered names without importing any plugin, so
``netready --help`` stays fast; ``get(kind, name)`` imports one plugin on first use, so a
plugin whose optional dependency is missing breaks only itself. The agent, the CLI and the
tests call every plugin the same way: ``await get("probe", "rtt").run(ctx, spec)``.

``register(plugin)`` adds a plugin in-process (an embedding application); an entry point of
the same name is then not loaded.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from netready.errors import ConfigError
from netready.plugin import KINDS, Context, Kind, Metric, Plugin

__all__ = ["GROUPS", "Context", "Kind", "Metric", "Plugin", "get", "names", "plugins", "register"]

#: Entry point group of each kind of plugin.
GROUPS: dict[Kind, str] = {"probe": "netready.probes", "collector": "netready.collectors"}

_LOADED: dict[tuple[str, str], Plugin] = {}


@functools.cache
def _entry_points(kind: Kind) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUPS[kind]):
        seen = found.get(ep.name)
        if seen is not None and seen.value != ep.value:
            raise ConfigError(
                f"two {kind} plugins are registered as {ep.name!r}: {seen.value} and {ep.value}"
            )
        found[ep.name] = ep
    return found


def _check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ConfigError(f"unknown plugin kind {kind!r} (known: {', '.join(KINDS)})")
    return kind


def names(kind: Kind) -> list[str]:
    """Registered plugin names of one kind, without importing them."""
    _check_kind(kind)
    return sorted(set(_entry_points(kind)) | {n for k, n in _LOADED if k == kind})


def get(kind: Kind, name: str) -> Plugin:
    """The plugin ``kind``/``name``, imported on first use; ``ConfigError`` if unknown.

    An ``ImportError`` of the plugin's module (a missing optional dependency) propagates.
    """
    key = (_check_kind(kind), name)
    if key in _LOADED:
        return _LOADED[key]
    ep = _entry_points(kind).get(name)
    if ep is None:
        raise ConfigError(f"unknown {kind} {name!r} (known: {', '.join(names(kind))})")
    obj = ep.load()
    if not isinstance(obj, Plugin) or obj.kind != kind or obj.name != name:
        raise ConfigError(
            f"{kind} {name!r}: entry point {ep.value} is not a Plugin declaring "
            f"kind={kind!r}, name={name!r}"
        )
    _LOADED[key] = obj
    return obj


def plugins(kind: Kind) -> list[Plugin]:
    """Every registered plugin of one kind (imports them all)."""
    return [get(kind, n) for n in names(kind)]


def register(plugin: Plugin) -> Plugin:
    """Add a plugin in-process; it shadows an entry point of the same kind and name."""
    _LOADED[(plugin.kind, plugin.name)] = plugin
    return plugin


def spec_for(probe: str) -> type[BaseModel]:
    """The ``Spec`` of a registered probe (for ``inventory.load(..., spec_for=...)``)."""
    return get("probe", probe).spec
