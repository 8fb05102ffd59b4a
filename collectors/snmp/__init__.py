"""Router collector over SNMP: WAN choice and access technology by evidence, interface
traffic (IF-MIB) and DSL line figures (ADSL-LINE-MIB, VDSL2-LINE-MIB, HDSL2-SHDSL-LINE-MIB).

Registered as collector ``snmp``. One poll reads sysDescr/sysObjectID/sysUpTime, ifTable +
ifXTable, ifStackTable, the IPv4 address table, the IPv4 default route's row of the three route
tables, the DSL line MIBs, DOCSIS modem status and the few vendor tables the detection reads,
then writes:

- ``if_traffic``: one record per interface and direction (``direction`` tag ``in``/``out``; on the
  WAN interface ``in`` is the download). Bit rates come from the counter delta since the
  previous poll, whose counters are kept in a JSON file under ``ctx.state_dir``
  (``snmp/<site>__<device>.json``). The first poll of a device only records a baseline.
  The WAN's records carry the detection: ``detected_tech`` tag, ``wan_reason``,
  ``tech_evidence``, ``tech_confidence`` and ``tech_check`` against the inventory's
  declared ``link.tech`` (``match``, ``mismatch`` or ``unverifiable``). A WAN without octet
  counters still gets one record with the detection.
- ``dsl_line``: one record per DSL line (see ``collectors/dsl.py``), ``method=snmp``.

The package is sans-IO apart from ``poll``: ``mib`` (OIDs, the ``.snmprec`` reader, the
interface table), ``wan`` (the WAN choice), ``tech`` (the technology), ``lines`` (DSL line
figures), ``traffic`` (counter maths) and ``detect`` (the three together) are pure functions
over ``{oid: value}`` dicts, tested on the recorded corpus (``tests/data/snmprec``) and used
unchanged on live agents. Only ``poll`` does I/O (pysnmp 7, asyncio).

A failed poll (timeout, wrong community or v3 credentials, a table that stops half-way) is a
failed ``if_traffic`` and ``dsl_line`` record with a one-line reason, never an exception or a
hang: every request has the inventory's timeout/retries and the whole poll a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from netready.collectors.dsl import DSL_FIELDS, DslLine, dsl_record, tech_check
from netready.collectors.snmp.detect import Result, detect
from netready.collectors.snmp.lines import db_scale_for, dsl_lines
from netready.collectors.snmp.mib import (
    ADSL_ATUC_CHAN,
    ADSL_ATUC_PHYS,
    ADSL_ATUR_CHAN,
    ADSL_ATUR_PHYS,
    ADSL_LINE,
    DOCS_CM_STATUS_VALUE,
    IF_COLUMNS,
    IF_ENTRY,
    IF_STACK_STATUS,
    IFX_COLUMNS,
    IFX_ENTRY,
    INET_CIDR_DEFAULT_IFINDEX,
    IP_AD_IFINDEX,
    IP_AD_MASK,
    IP_CIDR_DEFAULT_IFINDEX,
    IP_ROUTE_DEFAULT_IFINDEX,
    IP_ROUTE_DEFAULT_NEXT_HOP,
    ONEACCESS_RADIO_TECH,
    SHDSL_ENDPOINT_CURR,
    SHDSL_SPAN_STATUS,
    SYS_DESCR,
    SYS_OBJECT_ID,
    SYS_UPTIME,
    TELDAT_CELL_APN,
    TELTONIKA_MOBILE,
    XDSL2_BAND,
    XDSL2_CHAN,
    XDSL2_LINE,
    ZYXEL_XDSL_MODE,
    Iface,
    Value,
    Varbinds,
    as_int,
    column,
    interfaces,
    parse_snmprec,
)
from netready.collectors.snmp.traffic import (
    Interval,
    Sample,
    counter_delta,
    interval_between,
    sample_of,
    traffic_records,
)
from pydantic import BaseModel, ConfigDict, Field

from netready.errors import ConfigError
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

__all__ = [
    "IF_ENTRY",
    "PLUGIN",
    "SYS_UPTIME",
    "Iface",
    "Interval",
    "Sample",
    "Value",
    "Varbinds",
    "column",
    "counter_delta",
    "db_scale_for",
    "detect",
    "dsl_lines",
    "interfaces",
    "interval_between",
    "parse_snmprec",
    "poll",
    "records_from_varbinds",
    "sample_of",
    "traffic_records",
]

#: Octet counter columns, walked first and back to back so one timestamp fits them all.
COUNTER_WALKS: tuple[tuple[str, str], ...] = (
    ("ifXTable.6", f"{IFX_ENTRY}.6"),
    ("ifXTable.10", f"{IFX_ENTRY}.10"),
    ("ifTable.10", f"{IF_ENTRY}.10"),
    ("ifTable.16", f"{IF_ENTRY}.16"),
)

#: What one poll walks, in order: (name for messages, subtree). The route walks read the
#: default route's rows only (their prefixes end in the 0.0.0.0/0 index).
WALKS: tuple[tuple[str, str], ...] = (
    *COUNTER_WALKS,
    *((f"ifTable.{c}", f"{IF_ENTRY}.{c}") for c in IF_COLUMNS if c not in (10, 16)),
    *((f"ifXTable.{c}", f"{IFX_ENTRY}.{c}") for c in IFX_COLUMNS if c not in (6, 10)),
    ("ifStackTable", IF_STACK_STATUS),
    ("ipAdEntIfIndex", IP_AD_IFINDEX),
    ("ipAdEntNetMask", IP_AD_MASK),
    ("ipRouteTable default", IP_ROUTE_DEFAULT_IFINDEX),
    ("ipRouteTable default next hop", IP_ROUTE_DEFAULT_NEXT_HOP),
    ("ipCidrRouteTable default", IP_CIDR_DEFAULT_IFINDEX),
    ("inetCidrRouteTable default", INET_CIDR_DEFAULT_IFINDEX),
    ("adslLineTable", ADSL_LINE),
    ("adslAtucPhysTable", ADSL_ATUC_PHYS),
    ("adslAturPhysTable", ADSL_ATUR_PHYS),
    ("adslAtucChanTable", ADSL_ATUC_CHAN),
    ("adslAturChanTable", ADSL_ATUR_CHAN),
    ("xdsl2LineTable.20", f"{XDSL2_LINE}.20"),
    ("xdsl2LineTable.21", f"{XDSL2_LINE}.21"),
    ("xdsl2LineBandTable", XDSL2_BAND),
    ("xdsl2ChannelStatusTable.2", f"{XDSL2_CHAN}.2"),
    ("xdsl2ChannelStatusTable.4", f"{XDSL2_CHAN}.4"),
    ("hdsl2ShdslSpanStatusTable", SHDSL_SPAN_STATUS),
    ("hdsl2ShdslEndpointCurrTable.1", f"{SHDSL_ENDPOINT_CURR}.1"),
    ("hdsl2ShdslEndpointCurrTable.2", f"{SHDSL_ENDPOINT_CURR}.2"),
    ("docsIfCmStatusValue", DOCS_CM_STATUS_VALUE),
    ("Teltonika mobile", TELTONIKA_MOBILE),
    ("Teldat cellular APN", TELDAT_CELL_APN),
)

#: Scalars read with the first GET (besides sysDescr/sysObjectID/sysUpTime).
VENDOR_SCALARS: tuple[str, ...] = (ONEACCESS_RADIO_TECH, ZYXEL_XDSL_MODE)

# --------------------------------------------------------------------------- collector


class Spec(BaseModel):
    """What to read. The router, its SNMP credentials and the WAN pattern come from the
    site's inventory entry; ``host``/``port`` override them (tests point at snmpsim)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, description="router address (overrides the inventory)")
    port: int | None = Field(None, ge=1, le=65535, description="router SNMP port (overrides)")
    device: str | None = Field(None, description="device tag (default: the router host)")
    interfaces: Literal["wan", "all"] = Field(
        "wan", description="traffic for the WAN interface only, or for every interface"
    )
    dsl: bool = Field(True, description="read the DSL line MIBs (dsl_line records)")
    dsl_db_scale: Literal["auto", "tenths", "whole"] = Field(
        "auto", description="unit of the DSL dB values: tenths (the MIBs), whole, or auto"
    )
    deadline_s: float = Field(
        60.0, gt=0, le=600, description="seconds for the whole poll, all requests"
    )
    max_repetitions: int = Field(25, ge=1, le=200, description="GETBULK max-repetitions")
    max_interval_s: float = Field(
        3600.0, gt=0, description="seconds: older counter state starts a new baseline"
    )
    save_state: bool = Field(
        True, description="keep this poll's counters in --state-dir for the next rate"
    )


class SnmpFailure(Exception):
    def __init__(self, result: str, reason: str):
        super().__init__(reason)
        self.result = result
        self.reason = reason


_AUTH_ERRORS = {
    "UnknownUserName",
    "WrongDigest",
    "DecryptionError",
    "UnknownSecurityName",
    "UnsupportedSecurityLevel",
    "AuthenticationError",
    "AuthenticationFailure",
    "UnknownCommunityName",
    "NoAuthentication",
}


def _classify(
    ei: Any, where: str, timeout_s: float, tries: int, version: str = "2c"
) -> SnmpFailure:
    name = type(ei).__name__
    if name == "RequestTimedOut":
        # Agents drop a wrong v2c community, and a v3 request they cannot decrypt, silently.
        cred = "wrong community" if version == "2c" else "wrong v3 priv key"
        return SnmpFailure(
            "timeout",
            f"{where}: no SNMP response in {timeout_s:g} s x {tries} "
            f"(host down, port filtered, or {cred})",
        )
    if name in _AUTH_ERRORS:
        return SnmpFailure("auth_failed", f"{where}: SNMPv3 credentials rejected ({ei})")
    return SnmpFailure("error", f"{where}: {ei}")


def _value(v: Any) -> Value | None:
    """pysnmp value -> int | bytes | str; None for noSuch*/endOfMib."""
    cls = type(v).__name__
    if cls in ("NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null"):
        return None
    if cls in ("ObjectIdentifier", "ObjectName"):
        return str(v)
    if cls == "IpAddress":
        return ".".join(str(b) for b in v.asOctets())
    if hasattr(v, "asOctets"):
        return bytes(v.asOctets())
    try:
        return int(v)
    except (TypeError, ValueError):
        return str(v)


_MIB_VIEW: Any = None
_MIB_VIEW_LOCK = threading.Lock()


def _mib_view() -> Any:
    global _MIB_VIEW
    with _MIB_VIEW_LOCK:
        if _MIB_VIEW is None:
            from pysnmp.smi import builder, view

            _MIB_VIEW = view.MibViewController(builder.MibBuilder())
        return _MIB_VIEW


def _auth(h: Any, cfg: Any) -> Any:
    """pysnmp credentials from the inventory's ``SnmpConfig`` (secrets resolved here only)."""
    if cfg.version == "2c":
        return h.CommunityData(cfg.community.resolve(), mpModel=1)
    authp = {
        "sha": h.USM_AUTH_HMAC96_SHA,
        "sha256": h.USM_AUTH_HMAC192_SHA256,
        "sha512": h.USM_AUTH_HMAC384_SHA512,
        "md5": h.USM_AUTH_HMAC96_MD5,
    }[cfg.auth_protocol]
    privp = {
        "aes": h.USM_PRIV_CFB128_AES,
        "aes256": h.USM_PRIV_CFB256_AES,
        "des": h.USM_PRIV_CBC56_DES,
    }[cfg.priv_protocol]
    return h.UsmUserData(
        cfg.user,
        cfg.auth_key.resolve(),
        cfg.priv_key.resolve(),
        authProtocol=authp,
        privProtocol=privp,
    )


class _Session:
    """One engine, credentials and target: the GET and the walks of one poll."""

    def __init__(self, h: Any, engine: Any, auth: Any, target: Any, cfg: Any, where: str):
        self.h, self.engine, self.auth, self.target = h, engine, auth, target
        self.cfg, self.where = cfg, where
        self.tries = cfg.retries + 1

    async def get(self, oids: tuple[str, ...]) -> Varbinds:
        h = self.h
        ei, es, _eix, vbs = await h.get_cmd(
            self.engine,
            self.auth,
            self.target,
            h.ContextData(),
            *(h.ObjectType(h.ObjectIdentity(o)) for o in oids),
            lookupMib=False,
        )
        if ei:
            raise _classify(ei, self.where, self.cfg.timeout_s, self.tries, self.cfg.version)
        if es:
            text = str(es.prettyPrint())
            res = "auth_failed" if text in ("authorizationError", "noAccess") else "error"
            raise SnmpFailure(res, f"{self.where}: agent answered {text}")
        out: Varbinds = {}
        for name, val in vbs:
            v = _value(val)
            if v is not None:
                out[str(name)] = v
        return out

    async def walk(self, label: str, prefix: str, max_repetitions: int, out: Varbinds) -> None:
        h, n = self.h, 0
        async for ei, es, _eix, rows in h.bulk_walk_cmd(
            self.engine,
            self.auth,
            self.target,
            h.ContextData(),
            0,
            max_repetitions,
            h.ObjectType(h.ObjectIdentity(prefix)),
            lookupMib=False,
            lexicographicMode=False,
        ):
            if ei:
                f = _classify(ei, self.where, self.cfg.timeout_s, self.tries, self.cfg.version)
                raise SnmpFailure(
                    f.result, f"{f.reason}; {label} walk stopped after {n} values (partial table)"
                )
            if es:
                break  # noSuchName & co on a table the agent does not have: treat as empty.
            for name, val in rows:
                v = _value(val)
                if v is not None and str(name).startswith(prefix + "."):
                    out[str(name)] = v
                    n += 1


async def poll(
    host: str,
    port: int,
    cfg: Any,
    *,
    max_repetitions: int = 25,
    walks: tuple[tuple[str, str], ...] = WALKS,
) -> tuple[Varbinds, int]:
    """Read sysUpTime/sysObjectID/sysDescr (and the vendor scalars) and walk ``walks``;
    raise ``SnmpFailure``.

    Returns the varbinds and the time (ms) the octet counters were read: the middle of the
    back-to-back counter walks, so a slow poll does not skew the rate's interval.

    ``cfg`` is the inventory's ``SnmpConfig``; secrets are resolved here and never logged.
    One SnmpEngine per call (pysnmp wants one per event loop), closed at the end.
    """
    from pysnmp.hlapi.v3arch import asyncio as h  # slow import: only when polling

    auth = _auth(h, cfg)
    engine = h.SnmpEngine()
    # pysnmp builds a MIB compiler (a Lark parser, ~0.5 s of CPU) per engine the first time an
    # OID is resolved, even a numeric one. The MIB view holds no sockets and no loop, so one
    # per process serves every engine.
    engine.cache["mibViewController"] = _mib_view()
    where = f"{host}:{port}"
    try:
        try:
            target = await h.UdpTransportTarget.create(
                (host, port), timeout=cfg.timeout_s, retries=cfg.retries
            )
        except Exception as e:  # name resolution
            raise SnmpFailure("unreachable", f"{where}: {e}") from None
        s = _Session(h, engine, auth, target, cfg, where)
        out = await s.get((SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, *VENDOR_SCALARS))
        counter_labels = {label for label, _ in COUNTER_WALKS}
        t_first: int | None = None
        t_last: int | None = None
        for label, prefix in walks:
            if label in counter_labels and t_first is None:
                t_first = now_ms()
            await s.walk(label, prefix, max_repetitions, out)
            if label in counter_labels:
                t_last = now_ms()
        t = now_ms() if t_first is None or t_last is None else (t_first + t_last) // 2
        return out, t
    finally:
        engine.close_dispatcher()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def state_path(state_dir: Path, site: str, device: str) -> Path:
    return Path(state_dir) / "snmp" / f"{_safe(site)}__{_safe(device)}.json"


def load_state(path: Path) -> Sample | None:
    try:
        return Sample.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or corrupt: start a new baseline


def save_state(path: Path, sample: Sample) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(sample.to_json()))
    os.replace(tmp, path)


# ------------------------------------------------------------------ one poll's records


def wan_detection(res: Result, declared: str | None) -> tuple[dict[str, str], dict[str, Any]]:
    """The detection as the WAN records carry it: (tags, fields)."""
    d = res.tech
    check = tech_check(declared, d.tech)
    fields: dict[str, Any] = {
        "wan_reason": f"{res.wan.how}: {res.wan.reason}" if res.wan.reason else res.wan.how,
        "wan_port": res.wan.port.name if res.wan.port else None,
        "tech_evidence": d.evidence or None,
        "tech_confidence": d.confidence,
        "tech_check": check,
        "tech_mismatch": None if check not in ("match", "mismatch") else check == "mismatch",
    }
    return {"detected_tech": d.tech}, fields


def _fail(tags: Mapping[str, str], device: str, reason: str, time_ms: int) -> Record:
    return failure("if_traffic", {**tags, "method": "snmp", "device": device}, "error", reason,
                   time_ms)  # fmt: skip


def _problems(
    res: Result, base_tags: Mapping[str, str], device: str, wan_pattern: str | None, time_ms: int
) -> list[Record]:
    """The failed ``if_traffic`` records of a poll that names no usable WAN."""
    ifaces, wan = res.ifaces, res.wan.iface
    out: list[Record] = []
    if wan_pattern and wan is None:
        names = ", ".join(i.name for i in list(ifaces.values())[:20])
        out.append(_fail(base_tags, device, f"{device}: wan_interface /{wan_pattern}/ matches "
                         f"no ifName/ifAlias/ifDescr (have: {names})", time_ms))  # fmt: skip
    if not ifaces:
        out.append(_fail(base_tags, device, f"{device}: the agent returned no ifTable/ifXTable "
                         "rows", time_ms))  # fmt: skip
    elif wan is None and not wan_pattern:
        out.append(_fail(base_tags, device, f"{device}: {res.wan.reason}", time_ms))
    if out and res.tech.tech != "unknown":
        # What the device says of its access even without a WAN interface (a line MIB, a
        # DOCSIS sysDescr) is kept on the failure record.
        tags, fields = wan_detection(res, base_tags.get("tech"))
        keep = {k: v for k, v in fields.items() if v is not None}
        out = [Record(r.measurement, {**r.tags, **tags}, {**r.fields, **keep}, r.time_ms)
               for r in out]  # fmt: skip
    return out


def _detection_only(res: Result, base_tags: Mapping[str, str], device: str, time_ms: int) -> Record:
    """The WAN record of a device without octet counters: its state and the detection."""
    i = res.wan.iface
    assert i is not None
    tags, wfields = wan_detection(res, base_tags.get("tech"))
    fields: dict[str, Any] = {
        "is_wan": True,
        "oper_up": i.oper_up,
        "iftype": i.iftype,
        "speed_mbps": i.speed_mbps,
        "ifalias": i.alias or None,
        "note": f"{i.name}: the agent reports no octet counters (detection only)",
        **wfields,
    }
    rtags = {**base_tags, "method": "snmp", "device": device, "ifname": i.name, "result": "ok"}
    return Record("if_traffic", {**rtags, **tags}, fields, time_ms)


def records_from_varbinds(
    vb: Mapping[str, Value],
    *,
    base_tags: Mapping[str, str],
    device: str,
    prev: Sample | None,
    time_ms: int,
    wan_pattern: str | None = None,
    interfaces_mode: str = "wan",
    dsl: bool = True,
    db_scale_mode: str = "auto",
    vendor: str | None = None,
    contract_down_mbps: float | None = None,
    contract_up_mbps: float | None = None,
    max_interval_s: float = 3600.0,
) -> tuple[list[Record], Sample]:
    """The whole interpretation of one poll, without I/O: records and the sample to keep."""
    res = detect(vb, wan_pattern=wan_pattern, dsl=dsl, db_scale_mode=db_scale_mode,
                 vendor=vendor)  # fmt: skip
    ifaces, wan = res.ifaces, res.wan.iface
    cur = sample_of(ifaces, as_int(vb.get(SYS_UPTIME)), time_ms)
    records = _problems(res, base_tags, device, wan_pattern, time_ms)
    which = sorted(ifaces) if interfaces_mode == "all" else ([wan.index] if wan else [])
    up_line: DslLine | None = next((ln for ln in res.lines if ln.line_up), None)
    wan_tags, wan_fields = wan_detection(res, base_tags.get("tech"))
    records += traffic_records(
        ifaces,
        prev,
        cur,
        base_tags=base_tags,
        device=device,
        which=which,
        wan_index=wan.index if wan else None,
        contract_down_mbps=contract_down_mbps,
        contract_up_mbps=contract_up_mbps,
        sync_down_kbps=up_line.sync_down_kbps if up_line else None,
        sync_up_kbps=up_line.sync_up_kbps if up_line else None,
        wan_tags=wan_tags,
        wan_fields={k: v for k, v in wan_fields.items() if v is not None},
        max_interval_s=max_interval_s,
    )
    if wan is not None and wan.index not in cur.counters:
        records.append(_detection_only(res, base_tags, device, time_ms))
    for ln in res.lines:
        records.append(
            dsl_record(
                ln,
                base_tags,
                method="snmp",
                device=device,
                time_ms=time_ms,
                contract_down_mbps=contract_down_mbps,
                contract_up_mbps=contract_up_mbps,
            )
        )
    return records, cur


async def _read(host: str, port: int, cfg: Any, spec: Spec, tags: Mapping[str, str]
                ) -> tuple[Varbinds, int] | list[Record]:  # fmt: skip
    """Poll the agent; the failed records instead when it cannot be read."""
    t0 = now_ms()
    fail_tags = {**tags, "method": "snmp"}

    def failed(result: str, reason: str) -> list[Record]:
        return [failure(m, fail_tags, result, reason, t0) for m in ("if_traffic", "dsl_line")]

    try:
        return await asyncio.wait_for(
            poll(host, port, cfg, max_repetitions=spec.max_repetitions), spec.deadline_s
        )
    except SnmpFailure as e:
        return failed(e.result, e.reason)
    except TimeoutError:
        return failed("timeout", f"{host}:{port}: poll did not finish within the "
                      f"{spec.deadline_s:g} s deadline")  # fmt: skip
    except OSError as e:
        return failed("unreachable", f"{host}:{port}: {e}")


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Read the site router over SNMP: WAN traffic and utilisation, DSL line figures."""
    site = ctx.site
    if site is None or site.router is None or site.router.snmp is None:
        who = site.ods if site else "(no site)"
        raise ConfigError(f"site {who}: router.snmp is not configured in the inventory")
    router, cfg = site.router, site.router.snmp
    host = spec.host or router.host
    port = spec.port or cfg.port
    device = spec.device or router.host
    got = await _read(host, port, cfg, spec, {**ctx.tags, "device": device})
    if isinstance(got, list):
        return got
    vb, counters_ms = got
    path = state_path(ctx.state_dir, site.ods, device)
    records, cur = records_from_varbinds(
        vb,
        base_tags=ctx.tags,
        device=device,
        prev=load_state(path),
        time_ms=counters_ms,
        wan_pattern=router.wan_interface,
        interfaces_mode=spec.interfaces,
        dsl=spec.dsl,
        db_scale_mode=spec.dsl_db_scale,
        vendor=router.vendor,
        contract_down_mbps=site.link.down_mbps,
        contract_up_mbps=site.link.up_mbps,
        max_interval_s=spec.max_interval_s,
    )
    if spec.save_state:
        save_state(path, cur)
    return records


PLUGIN = Plugin(
    kind="collector",
    name="snmp",
    spec=Spec,
    run=run,
    measurement="if_traffic",
    method="snmp",
    summary="Poll the site router over SNMP (v2c or v3 authPriv, from the inventory): the WAN "
    "interface and access technology by evidence (default route, addresses, ifStackTable, "
    "names, line MIBs), WAN traffic and utilisation (if_traffic), DSL line figures (dsl_line). "
    "Rates need two polls: the first records a baseline in --state-dir.",
    needs="router.snmp",
    interval_s=60.0,
    fields=(
        Metric("octets", "bytes", "raw interface counter (for non_negative_derivative in Grafana)"),
        Metric("counter_bits", "bits", "counter width, 64 or 32"),
        Metric("speed_mbps", "Mbit/s", "ifHighSpeed (else ifSpeed / 1e6); absent if 0"),
        Metric("oper_up", "bool", "ifOperStatus == up"),
        Metric("is_wan", "bool", "the WAN interface"),
        Metric("iftype", "IANAifType", "the interface type"),
        Metric("ifalias", "text", "ifAlias, when set"),
        Metric("interval_s", "s", "seconds since the previous poll (absent on a baseline)"),
        Metric("interval_source", "text", "what timed the interval: sysUpTime or wallclock"),
        Metric("rate_mbps", "Mbit/s", "mean bit rate over the interval"),
        Metric("util_pct", "%", "rate / speed_mbps x 100"),
        Metric("util_contract_pct", "%", "WAN only: rate / contracted link.down_mbps (in) or "
               "up_mbps (out) x 100"),
        Metric("util_sync_pct", "%", "WAN only, when a DSL line is up: rate / DSL sync rate x 100"),
        Metric("errors", "packets", "ifIn/OutErrors in the interval"),
        Metric("discards", "packets", "ifIn/OutDiscards in the interval"),
        Metric("wan_reason", "text", "WAN only: how the WAN was chosen (inventory or auto) and "
               "the evidence (default route, public address, names, ...)"),
        Metric("wan_port", "text", "WAN only: the physical port under it (ifStackTable or the "
               "naming convention), when known"),
        Metric("tech_evidence", "text", "WAN only: what the detected_tech rests on"),
        Metric("tech_confidence", "text", "WAN only: high, medium or low"),
        Metric("tech_check", "text", "WAN only: detected vs the inventory's link.tech: match, "
               "mismatch, or unverifiable (an Ethernet handoff: the router cannot see what is in "
               "front of it); absent when either is unknown"),
        Metric("tech_mismatch", "bool", "WAN only: tech_check is mismatch (absent when "
               "unverifiable or unknown)"),
        Metric("note", "text", "why there is no rate (first poll, agent restart, discontinuity, "
               "stale state, no octet counters)"),
        *DSL_FIELDS,
    ),
)  # fmt: skip
