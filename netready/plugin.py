"""The plugin contract: what a probe or collector declares about itself.

A plugin is one module that ends with its declaration::

    PLUGIN = Plugin(
        kind="probe", name="rtt", spec=Spec, run=run,
        measurement="rtt",          # what it writes, failures included
        method="twamp_light",       # the method tag of its records
        summary="Isochronous UDP round trips (TWAMP-light): RTT, jitter, loss, reorder.",
        fields=(Metric("rtt_p50_ms", "ms", "median round-trip time"), ...),
        interval_s=300.0,           # default interval in the agent
    )

and one registration line in ``pyproject.toml`` (``[project.entry-points."netready.probes"]``
``rtt = "netready.probes.rtt:PLUGIN"``; collectors use the group ``netready.collectors``).
Built-ins register exactly as a third-party package would; ``netready.registry`` finds them
by name and imports a plugin only when it is used.

The core is generic over this declaration: the agent schedules from ``interval_s`` and
``needs``, the budget admits ``heavy`` plugins by their ``cost`` and records refusals under
their ``measurement`` and ``method``, the monthly traffic counts each run by the probe's
``traffic``, and the CLI builds ``netready probe NAME`` /
``netready collect NAME`` from the ``Spec`` fields (a field's ``description`` is its help).

The rules every plugin keeps (``tests/test_plugin_contract.py`` checks them all):

- ``Spec`` is a pydantic model with ``extra="forbid"``; every field has a ``description``.
  ``json_schema_extra={"cli": "--duration"}`` keeps a command-line name that differs from
  the dashed field name (see ``netready/cli/plugins.py`` for the forms it takes). Secrets
  are the inventory's ``Secret`` types (``env:NAME`` / ``file:PATH``, never the value).
- ``run(ctx, spec)`` never raises for a failed measurement: it returns a record with a
  ``result`` tag and a ``reason`` field (``records.failure``), under ``measurement``. It
  raises only ``ConfigError`` for a spec or site it cannot work with, and on bugs.
- Every field it writes is declared in ``fields``, and ``docs/plugins/<name>.md`` carries
  the metric table rendered from them.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from netready.errors import ConfigError
from netready.records import Record

if TYPE_CHECKING:
    from netready.inventory import Inventory, Site

Kind = Literal["probe", "collector"]
KINDS: tuple[Kind, ...] = ("probe", "collector")


@dataclass
class Context:
    """What a plugin may know about where it runs. No I/O happens on construction."""

    site: Site | None = None
    inventory: Inventory | None = None
    state_dir: Path = field(default_factory=lambda: Path(".netready-state"))
    force: bool = False  # run heavy tests even in clinic hours / over the daily budget
    progress: bool = False  # a person is watching: plugins may say what they do on stderr

    @property
    def tags(self) -> dict[str, str]:
        """Base tags for every record: site, icb, tech (empty without a site)."""
        return dict(self.site.tags) if self.site else {}

    def note(self, text: str) -> None:
        """One progress line on stderr for the person watching (nothing otherwise)."""
        if self.progress:
            print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Metric:
    """One field a plugin writes: its name (which carries the unit), the unit, what it means.

    ``measurement``: the measurement it belongs to when the plugin writes more than one
    (the SNMP collector writes ``if_traffic`` and ``dsl_line``); default the plugin's own.
    """

    name: str
    unit: str
    definition: str
    measurement: str | None = None


RunFn = Callable[[Context, Any], Awaitable[list[Record]]]
CostFn = Callable[[Any], float | None]
TrafficFn = Callable[[Any, Sequence[Record]], int]


@dataclass(frozen=True)
class Plugin:
    """A probe's or collector's declaration (see the module docstring)."""

    kind: Kind
    name: str
    spec: type[BaseModel]
    run: RunFn
    measurement: str
    method: str
    summary: str
    fields: tuple[Metric, ...] = ()
    #: Uses real bandwidth: clinic hours, the daily budget and the per-test byte cap apply
    #: (``netready.budget``). A heavy plugin's spec may have ``max_mb`` (its own byte cap).
    heavy: bool = False
    #: Bytes a run of this spec moves at most, when that is known before it starts (an
    #: emulated call, a UDP test at a set rate); the budget refuses a run over its cap.
    #: ``None``: the plugin meters itself against ``budget.test_cap_bytes`` while it runs.
    cost: CostFn | None = None
    #: Probes: the bytes one run put on the wire, both directions and headers included, from
    #: the spec and the run's records -- only from fields the plugin declares in ``fields``
    #: (``netready.budget`` has the helpers: ``tcp_traffic``, ``echo_traffic``). The agent adds
    #: it to the site's monthly traffic (``budget.wire_bytes``, ``traffic_month_mb``). Every
    #: probe declares it; ``None`` (collectors): not counted.
    traffic: TrafficFn | None = None
    #: Default interval in the agent; ``defaults.intervals_s[name]`` in the inventory wins.
    interval_s: float = 300.0
    #: Collectors: the site configuration they read, a dotted path into the inventory's
    #: ``Site`` ("router.snmp"); the agent schedules the collector for every site that has
    #: it. ``None``: never scheduled by the agent (probes are scheduled from targets; a
    #: collector without ``needs`` runs by hand, e.g. on a capture file).
    needs: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"plugin {self.name}: kind must be one of {KINDS}")

    @property
    def measurements(self) -> tuple[str, ...]:
        """Every measurement this plugin writes, its own first."""
        out = [self.measurement]
        for m in self.fields:
            if m.measurement and m.measurement not in out:
                out.append(m.measurement)
        return tuple(out)

    def fields_of(self, measurement: str) -> tuple[Metric, ...]:
        """The declared fields of one of its measurements."""
        return tuple(m for m in self.fields if (m.measurement or self.measurement) == measurement)

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

    def configured_for(self, site: Site) -> bool:
        """Whether ``site`` has the configuration this collector ``needs``."""
        if self.needs is None:
            return False
        node: Any = site
        for part in self.needs.split("."):
            node = getattr(node, part, None)
            if node is None:
                return False
        return True
