"""Interface traffic from IF-MIB octet counters: wraps, discontinuities, intervals, rates.

Sans-IO: two samples (this poll's counters and the previous poll's, kept by the collector in a
JSON state file) in, ``if_traffic`` records out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netready.collectors.snmp.mib import Iface

from netready.records import Record


def counter_delta(prev: int, cur: int, bits: int, max_octets: float | None) -> int | None:
    """Octets between two readings of a counter of ``bits`` bits.

    A smaller reading is a wrap if ``cur + 2**bits - prev`` is plausible (at most
    ``max_octets``, i.e. the interface's speed over the interval with 50 % slack); otherwise
    it is a discontinuity (counter reset without an agent restart) and gives ``None``.
    A 32-bit counter that wrapped more than once in one interval cannot be detected: poll a
    32-bit-only device at least every 34 s per 1 Gbit/s of traffic.
    """
    if cur >= prev:
        return cur - prev
    wrapped = cur + (1 << bits) - prev
    if max_octets is not None and wrapped > max_octets:
        return None
    return wrapped


@dataclass
class Sample:
    """What one poll keeps for the next: time, agent uptime, counters per ifIndex."""

    time_ms: int
    uptime_cs: int | None
    counters: dict[int, dict[str, int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "time_ms": self.time_ms,
            "uptime_cs": self.uptime_cs,
            "counters": {str(k): v for k, v in self.counters.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            int(d["time_ms"]),
            None if d.get("uptime_cs") is None else int(d["uptime_cs"]),
            {int(k): {kk: int(vv) for kk, vv in v.items()} for k, v in d["counters"].items()},
        )


def sample_of(ifaces: Mapping[int, Iface], uptime_cs: int | None, time_ms: int) -> Sample:
    counters: dict[int, dict[str, int]] = {}
    for i in ifaces.values():
        if i.counter_bits is None or i.in_octets is None or i.out_octets is None:
            continue
        c = {"bits": i.counter_bits, "in": i.in_octets, "out": i.out_octets}
        for k in ("in_errors", "out_errors", "in_discards", "out_discards"):
            v = getattr(i, k)
            if v is not None:
                c[k] = v
        counters[i.index] = c
    return Sample(time_ms, uptime_cs, counters)


@dataclass
class Interval:
    """How two samples relate: seconds between them, or why no rate can be computed."""

    seconds: float | None
    source: str  # sysUpTime | wallclock
    note: str | None = None  # agent restart, stale state...


def interval_between(prev: Sample | None, cur: Sample, max_interval_s: float) -> Interval:
    """Seconds between polls: the agent's sysUpTime delta when it advanced, else wall clock.

    sysUpTime going back means the agent restarted (or its 497-day TimeTicks wrapped):
    counters restarted too, so no rate this time, only a new baseline.
    """
    if prev is None:
        return Interval(None, "", "first poll of this device: baseline only")
    if prev.uptime_cs is not None and cur.uptime_cs is not None:
        if cur.uptime_cs < prev.uptime_cs:
            return Interval(
                None,
                "sysUpTime",
                f"agent restarted (sysUpTime went back from {prev.uptime_cs / 100:.0f} s "
                f"to {cur.uptime_cs / 100:.0f} s): baseline only",
            )
        if cur.uptime_cs > prev.uptime_cs:
            secs = (cur.uptime_cs - prev.uptime_cs) / 100.0
            return _bounded(secs, "sysUpTime", max_interval_s)
    secs = (cur.time_ms - prev.time_ms) / 1000.0
    return _bounded(secs, "wallclock", max_interval_s)


def _bounded(secs: float, source: str, max_interval_s: float) -> Interval:
    if secs <= 0:
        return Interval(None, source, "no time passed since the previous poll: baseline only")
    if secs > max_interval_s:
        return Interval(
            None,
            source,
            f"previous poll is {secs:.0f} s old (> {max_interval_s:.0f} s): baseline only",
        )
    return Interval(secs, source)


def _rate_fields(
    i: Iface, c: Mapping[str, int], p: Mapping[str, int], key: str, secs: float, source: str
) -> tuple[dict[str, Any], str | None]:
    """Rate, utilisation and error/discard counts of one direction (``key`` in/out), or the
    note saying why there is none (a counter that went back without an agent restart)."""
    speed_bps = (i.speed_mbps or 0) * 1e6
    max_octets = (speed_bps if speed_bps > 0 else 100e9) * 1.5 * secs / 8
    d = counter_delta(p[key], c[key], c["bits"], max_octets)
    if d is None:
        return {}, "counter went back without an agent restart (discontinuity): baseline only"
    mbps = d * 8 / secs / 1e6
    fields: dict[str, Any] = {"interval_s": secs, "interval_source": source, "rate_mbps": mbps}
    if i.speed_mbps:
        fields["util_pct"] = 100.0 * mbps / i.speed_mbps
    for fk, ck in (("errors", f"{key}_errors"), ("discards", f"{key}_discards")):
        if ck in c and ck in p:
            fields[fk] = counter_delta(p[ck], c[ck], 32, None)
    return fields, None


def _direction_fields(
    i: Iface, c: Mapping[str, int], p: Mapping[str, int] | None, key: str, iv: Interval
) -> dict[str, Any]:
    """Every field of one interface and direction except the WAN-only ones."""
    fields: dict[str, Any] = {
        "octets": c[key],
        "counter_bits": c["bits"],
        "speed_mbps": i.speed_mbps,
        "oper_up": i.oper_up,
        "iftype": i.iftype,
        "ifalias": i.alias or None,
    }
    note = iv.note
    if p is not None and p.get("bits") == c["bits"] and iv.seconds:
        rate, why = _rate_fields(i, c, p, key, iv.seconds, iv.source)
        fields.update(rate)
        note = why or note
    elif p is not None:
        note = f"counter width changed ({p.get('bits')} -> {c['bits']} bit): baseline only"
    elif iv.seconds:
        note = "interface not in the previous poll: baseline only"
    if note and "rate_mbps" not in fields:
        fields["note"] = note
    return fields


def traffic_records(
    ifaces: Mapping[int, Iface],
    prev: Sample | None,
    cur: Sample,
    *,
    base_tags: Mapping[str, str],
    device: str,
    which: list[int],
    wan_index: int | None,
    contract_down_mbps: float | None = None,
    contract_up_mbps: float | None = None,
    sync_down_kbps: float | None = None,
    sync_up_kbps: float | None = None,
    wan_tags: Mapping[str, str] | None = None,
    wan_fields: Mapping[str, Any] | None = None,
    max_interval_s: float = 3600.0,
) -> list[Record]:
    """``if_traffic`` records (one per interface in ``which`` and direction). Pure function.

    Fields: ``octets`` (the raw counter, int), ``counter_bits`` (64/32), ``speed_mbps``,
    ``oper_up``, ``is_wan``, ``iftype``, ``ifalias``; with a previous sample:
    ``interval_s``, ``rate_mbps``, ``util_pct`` (against ifHighSpeed), ``errors`` and
    ``discards`` (counts in the interval); on the WAN also ``util_contract_pct`` (against the
    inventory's contracted down/up rate), ``util_sync_pct`` (against the DSL sync rate) and
    ``wan_tags``/``wan_fields`` (the detection: ``detected_tech``, ``wan_reason``, ...).
    """
    iv = interval_between(prev, cur, max_interval_s)
    out: list[Record] = []
    for ix in which:
        i = ifaces.get(ix)
        c = cur.counters.get(ix)
        if i is None or c is None:
            continue
        p = prev.counters.get(ix) if (prev is not None and iv.seconds) else None
        is_wan = ix == wan_index
        for direction, contract, sync in (
            ("in", contract_down_mbps, sync_down_kbps),
            ("out", contract_up_mbps, sync_up_kbps),
        ):
            fields = _direction_fields(i, c, p, direction, iv)
            fields["is_wan"] = is_wan
            tags = {
                **base_tags,
                "method": "snmp",
                "device": device,
                "ifname": i.name,
                "direction": direction,
                "result": "ok",
            }
            if is_wan:
                mbps = fields.get("rate_mbps")
                if mbps is not None and contract:
                    fields["util_contract_pct"] = 100.0 * mbps / contract
                if mbps is not None and sync:
                    fields["util_sync_pct"] = 100.0 * mbps * 1000.0 / sync
                tags.update(wan_tags or {})
                fields.update(wan_fields or {})
            out.append(Record("if_traffic", tags, fields, cur.time_ms))
    return out
