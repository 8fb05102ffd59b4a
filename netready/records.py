"""The one record type and the InfluxDB schema (measurements, tags, fields).

Only ``netready/influx.py`` knows line protocol; everything else builds ``Record`` values.

Conventions (see docs/design.md):
- Tags are indexed, low-cardinality strings: ``TAG_KEYS``; ``FIELD_TAGS`` (the declared tech)
  travel with the tags but are stored as fields, so a site changing technology keeps its series.
- Field names carry their unit and definition (``rtt_p50_ms``, ``jitter_rfc3550_ms``).
- A field keeps its type: floats stay floats (build them as ``float``; ``1.0`` is written
  ``1.0``), counts are Python ints (written ``1i``), booleans are bools, reasons are strings.
- "No data" is an absent field, never 0. ``None`` values are dropped when a record is built.
- A failed measurement is still a record: ``result`` tag (``ok`` or a failure code) and a
  ``reason`` string field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FieldValue = float | int | str | bool

#: Tag keys allowed on records (indexed, low cardinality).
TAG_KEYS: frozenset[str] = frozenset(
    {
        "site",
        "icb",
        "tech",
        "target",
        "method",
        "direction",
        "device",
        "ifname",
        "profile",
        "result",
        "host",
        "detected_tech",
        "stream",
        "source",
        "gate",
    }
)

#: Declared site state that records carry among their tags (``Site.tags``: the agent and the
#: collectors read it there) but the store keeps as a string *field*: a tag value is part of a
#: series' identity, so a site upgraded from fttc to fttp would fork every series it has (and
#: double its cardinality). Reports group copper/fibre by the inventory's declared tech.
FIELD_TAGS: frozenset[str] = frozenset({"tech"})
#: Measurements that keep ``FIELD_TAGS`` as tags: ``readiness`` (one point per site and
#: assessment), which the estate dashboards group by declared tech (GROUP BY takes tags only);
#: a verdict belongs to the tech it was judged on.
STATE_TAGGED: frozenset[str] = frozenset({"readiness"})

#: Measurements the core and its reports read, with a one-line description (the docs test uses
#: this). A plugin declares what it writes itself (``netready.plugin.Plugin.measurement``);
#: one the rubric does not read need not be listed here (docs/plugins.md).
MEASUREMENTS: dict[str, str] = {
    "rtt": "round-trip time, jitter, loss of an isochronous UDP (TWAMP-light) or ICMP probe",
    "media": "one direction of an emulated video consultation (audio + video) per run",
    "throughput": "goodput of a speed test in one direction",
    "if_traffic": "router interface bit rates and utilisation from SNMP counters",
    "dsl_line": "DSL line sync/attainable rates, SNR margin, attenuation (SNMP or CLI)",
    "rtp_stream": "one RTP stream from a captured call",
    "qos": "whether a DSCP-aware queue protects a call (EF, AF41) against best effort under bulk load",
    "readiness": "verdict and capacity of a site for a readiness profile",
    "agent": "the site agent's own health: spool depth, dropped records, last ship",
}

#: Result tag values. ``ok`` means the measurement is valid.
RESULT_OK = "ok"
RESULTS: frozenset[str] = frozenset(
    {
        "ok",
        "timeout",
        "refused",
        "unreachable",
        "auth_failed",
        "error",
        "budget_exceeded",
        "link_busy",
        "skipped",
    }
)


def now_ms() -> int:
    """Wall-clock time in integer milliseconds (the timestamp precision netready writes)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Record:
    """One point: measurement, tags, fields, time in ms since the epoch (UTC).

    Construction validates names and drops ``None`` fields; it does not escape anything
    (that is line protocol's business, in ``influx.py``).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ms: int = field(default_factory=now_ms)

    def __post_init__(self) -> None:
        if not self.measurement:
            raise ValueError("record has an empty measurement name")
        clean: dict[str, FieldValue] = {}
        for k, v in self.fields.items():
            if v is None:
                continue
            if isinstance(v, float) and not math.isfinite(v):
                continue  # NaN/inf cannot be stored; absent means "no data"
            if not isinstance(v, (float, int, str, bool)):
                raise TypeError(f"field {k!r} of {self.measurement!r} has type {type(v).__name__}")
            clean[k] = v
        tags = {k: str(v) for k, v in self.tags.items() if v is not None and str(v) != ""}
        object.__setattr__(self, "fields", clean)
        object.__setattr__(self, "tags", tags)
        if not isinstance(self.time_ms, int):
            object.__setattr__(self, "time_ms", int(self.time_ms))

    @property
    def result(self) -> str:
        return self.tags.get("result", RESULT_OK)

    @property
    def ok(self) -> bool:
        return self.result == RESULT_OK

    def with_tags(self, **tags: str | None) -> Record:
        merged = {**self.tags, **{k: v for k, v in tags.items() if v is not None}}
        return Record(self.measurement, merged, self.fields, self.time_ms)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (used by ``--format json`` and the spool)."""
        return {
            "measurement": self.measurement,
            "tags": dict(self.tags),
            "fields": dict(self.fields),
            "time_ms": self.time_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        return cls(
            str(d["measurement"]),
            dict(d.get("tags") or {}),
            dict(d.get("fields") or {}),
            int(d["time_ms"]),
        )


def failure(
    measurement: str,
    tags: Mapping[str, str],
    result: str,
    reason: str,
    time_ms: int | None = None,
    **fields: FieldValue,
) -> Record:
    """A failed measurement: ``result`` tag and a one-line ``reason`` field.

    Example: ``failure("rtt", tags, "timeout", "no reply from 10.0.0.1:862 in 2.0 s")``.
    """
    if result not in RESULTS or result == RESULT_OK:
        raise ValueError(f"not a failure result: {result!r}")
    return Record(
        measurement,
        {**tags, "result": result},
        {"reason": reason.splitlines()[0] if reason else result, **fields},
        now_ms() if time_ms is None else time_ms,
    )
