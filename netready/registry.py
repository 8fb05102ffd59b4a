"""Probes and collectors, found by name.

A plugin is one module with one small contract::

    class Spec(pydantic.BaseModel): ...          # what to measure; validated before any I/O
    async def run(ctx: Context, spec: Spec) -> list[Record]: ...

registered at import time with ``@register("probe", "rtt", Spec)``. Built-ins are listed
in ``BUILTINS`` and imported on first use, so ``netready --help`` stays fast and a probe
whose optional dependency is missing does not break the others. The agent, the CLI and the
tests call every plugin the same way: ``await get("probe", "rtt").run(ctx, spec)``.

A failed measurement is a record with a ``result`` tag (``records.failure``); ``run`` raises
only for bad specs (``ConfigError``) and bugs.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from netready.errors import ConfigError
from netready.records import Record

if TYPE_CHECKING:
    from netready.inventory import Inventory, Site

Kind = Literal["probe", "collector"]

#: Built-in plugins: kind -> name -> module. Imported lazily by ``get``.
BUILTINS: dict[str, dict[str, str]] = {
    "probe": {
        "rtt": "netready.probes.rtt",
        "media": "netready.probes.media",
        "icmp": "netready.probes.icmp",
        "throughput": "netready.probes.throughput",
        "iperf3": "probes.iperf3",
        "speedtest": "netready.probes.speedtest",
    },
    "collector": {
        "snmp": "netready.collectors.snmp",
        "ssh": "netready.collectors.ssh",
        "pcap": "netready.collectors.pcap",
    },
}


@dataclass
class Context:
    """What a plugin may know about where it runs. No I/O happens on construction."""

    site: Site | None = None
    inventory: Inventory | None = None
    state_dir: Path = field(default_factory=lambda: Path(".netready-state"))
    force: bool = False  # run heavy tests even in clinic hours / over budget
    progress: bool = False  # plugins may show a rich progress bar on stderr

    @property
    def tags(self) -> dict[str, str]:
        """Base tags for every record: site, icb, tech (empty without a site)."""
        return dict(self.site.tags) if self.site else {}


RunFn = Callable[[Context, Any], Awaitable[list[Record]]]


@dataclass(frozen=True)
class Plugin:
    kind: Kind
    name: str
    spec: type[BaseModel]
    run: RunFn
    heavy: bool = False  # uses real bandwidth: budgets and clinic hours apply
    doc: str = ""

    def make_spec(self, params: dict[str, Any], where: str = "") -> BaseModel:
        """Validate parameters into this plugin's Spec; one-line ``ConfigError`` otherwise."""
        try:
            return self.spec.model_validate(params)
        except ValidationError as e:
            errs = "; ".join(
                f"{'.'.join(str(x) for x in er['loc']) or '(spec)'}: {er['msg']}"
                for er in e.errors()
            )
            raise ConfigError(f"{where or self.kind + ' ' + self.name}: {errs}") from None


_REGISTRY: dict[tuple[str, str], Plugin] = {}


def register(
    kind: Kind, name: str, spec: type[BaseModel], *, heavy: bool = False
) -> Callable[[RunFn], RunFn]:
    """Decorator: ``@register("probe", "rtt", Spec)`` on ``async def run(ctx, spec)``."""

    def deco(fn: RunFn) -> RunFn:
        _REGISTRY[(kind, name)] = Plugin(kind, name, spec, fn, heavy, (fn.__doc__ or "").strip())
        return fn

    return deco


def get(kind: Kind, name: str) -> Plugin:
    key = (kind, name)
    if key not in _REGISTRY:
        mod = BUILTINS.get(kind, {}).get(name)
        if mod is None:
            known = ", ".join(sorted(BUILTINS.get(kind, {})))
            raise ConfigError(f"unknown {kind} {name!r} (known: {known})")
        importlib.import_module(mod)
        if key not in _REGISTRY:
            raise ConfigError(f"{kind} {name!r}: module {mod} did not register it")
    return _REGISTRY[key]


def names(kind: Kind) -> list[str]:
    return sorted(set(BUILTINS.get(kind, {})) | {n for k, n in _REGISTRY if k == kind})
