"""The QoS check (``netready probe qos``): does the site's queue protect the call?

"Will calls survive while someone sends a CT study?" (issue 14; flent's RRUL asked as yes or
no). Two emulated calls against a media responder (``netready responder``), both directions
at once, sharing one receive clock:

- the call: audio marked EF (46), video AF41 (34), as the media probe sends them;
- its best-effort twin marked DSCP 0: the same audio (packet size and rate) and a token
  video stream (one small packet a frame).

First ``idle_s`` seconds of both on the idle line (each class's idle minimum one-way delay),
then the throughput probe's own bulk TCP streams against a speed endpoint (``netready
serve``) saturate download and upload at once (``streams`` connections each, one test at the
endpoint, through the same byte cap), and after ``ramp_s`` both calls run again for
``duration_s`` under that load. Per direction and class (``ef`` the call's audio, ``af41``
its video, ``be`` the twin's audio): loss, added delay (median and p95 one-way delay over the
idle minimum) and RFC 3550 jitter; the rule (``netready.rubric.qos_verdict``) says whether
QoS is effective.

The folder: ``analysis.py`` the class figures (sans-IO); this module the socket edge (the
media probe's ``run_call`` and the throughput probe's ``measure_direction``), ``run`` and the
declaration.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any

from netready.probes import throughput
from netready.probes.media import (
    FPS,
    KEYFRAME_EVERY,
    MEDIA_PROFILES,
    CallFailed,
    CallResult,
    Clock,
    MediaProfile,
    call_bytes,
    run_call,
)
from netready.probes.media.probe import moved_bytes
from netready.probes.media.wire import ProfileName
from netready.probes.qos.analysis import CLASSES, class_fields
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import budget, rubric
from netready.inventory import HeaderSecret, Secret, split_hostport
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

#: The load's stop rule is never met (it runs to its time cap, past the loaded calls): the
#: throughput probe stops when ``stable_windows`` windows agree within ``tolerance_pct``.
LOAD_TOLERANCE_PCT = 0.001
LOAD_STABLE_WINDOWS = 20
#: ... and the load outlives the loaded calls by this much (their stop and statistics).
LOAD_TAIL_S = 1.5
#: The twin's video: one 42-byte packet a frame (the schedule always has a video stream).
TWIN_VIDEO_KBPS = 10.0
#: After the calls, a load direction gets this long beyond its time cap to end (its own
#: watchdog allows 10 s more than the cap); then it is cancelled.
LOAD_GRACE_S = 12.0
#: The whole check ends at most this long after its schedule (idle + ramp + loaded).
WATCHDOG_S = 60.0
#: A load that stopped more than this much before the calls' end did not load them.
LOAD_SHORT_S = 0.5

#: the share of one test's ping and RPM probe rate each of the two load directions uses: together
#: 0.8 of one test's, under the endpoint's per-client ping limit (50/s) with room for the
#: pacing's spread (on loopback, where nothing slows them: ~24 pings/s at 0.4 each, ~52/s and
#: HTTP 429 at a full share each; tests/test_throughput.py)
QOS_PROBE_SHARE = 0.4


class Spec(BaseModel):
    """What to check: a call and its best-effort twin, idle and then under bulk load."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="HOST:PORT of a netready media responder")
    load_target: str = Field(
        description="speed endpoint URL for the bulk load, http(s)://HOST:PORT[/prefix] "
        "(netready serve)",
        json_schema_extra={"cli": "--load"},
    )
    load_token: HeaderSecret = Field(
        description="the speed endpoint's bearer token: env:NAME or file:PATH",
        json_schema_extra={"cli": "--token"},
    )
    profile: ProfileName = Field(
        "sd", description="video profile of the call and its twin: sd 0.5, hd 1.5, fhd 2.5 Mbit/s"
    )
    duration_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="seconds of the calls under load",
        json_schema_extra={"cli": "--duration"},
    )
    idle_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds of the calls on the idle line",
        json_schema_extra={"cli": "--idle"},
    )
    ramp_s: float = Field(
        2.0,
        ge=0.5,
        le=60,
        description="seconds of load before the loaded calls start",
        json_schema_extra={"cli": "--ramp"},
    )
    streams: int = Field(4, ge=1, le=8, description="bulk TCP connections per direction")
    secret: Secret | None = Field(
        None, description="shared secret the responder requires: env:NAME or file:PATH"
    )
    dscp_audio: int = Field(46, ge=1, le=63, description="DSCP of the call's audio (EF)")
    dscp_video: int = Field(34, ge=1, le=63, description="DSCP of the call's video (AF41)")
    timeout_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="seconds to wait for the responder's control answers",
        json_schema_extra={"cli": "--timeout"},
    )
    max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="byte cap of one run (calls + load, both directions), MB; default: the "
        "site's budget.test_mb (100)",
        json_schema_extra={"cli": "--budget-mb"},
    )
    verify_tls: bool = Field(
        True,
        description="verify the speed endpoint's TLS certificate (--insecure: do not)",
        json_schema_extra={"cli": "--verify-tls/--insecure"},
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v)
        return v

    @field_validator("load_target")
    @classmethod
    def _load(cls, v: str) -> str:
        throughput.Spec.model_validate({"target": v, "token": "env:UNUSED"})  # same URL rule
        return v

    def load_spec(self) -> throughput.Spec:
        """The throughput probe's options for the bulk load: both directions, a fixed
        number of streams, run to the time cap."""
        return throughput.Spec(
            target=self.load_target,
            token=self.load_token,
            direction="both",
            max_seconds=self.ramp_s + self.duration_s + LOAD_TAIL_S,
            start_streams=self.streams,
            max_streams=self.streams,
            tolerance_pct=LOAD_TOLERANCE_PCT,
            stable_windows=LOAD_STABLE_WINDOWS,
            rpm_hold_s=0.0,
            verify_tls=self.verify_tls,
        )


def twin_profile(prof: MediaProfile) -> MediaProfile:
    """The best-effort twin: the call's audio (same packet size and rate as EF) and a token
    video stream (``TWIN_VIDEO_KBPS``), so the twin adds no more than the audio to the line."""
    return MediaProfile(prof.name, "best-effort twin", TWIN_VIDEO_KBPS)


def calls_bytes(spec: Spec) -> float:
    """IP bytes the call and its twin move, idle and loaded, both directions."""
    prof = MEDIA_PROFILES[spec.profile]
    secs = spec.idle_s + spec.duration_s
    return call_bytes(prof, secs) + call_bytes(twin_profile(prof), secs)


async def _pair(spec: Spec, duration_s: float, clock: Clock) -> dict[str, CallResult]:
    """The call and its best-effort twin at once (the twin half a frame and half a key-frame
    period later, so their bursts do not coincide). Raises ``CallFailed``."""
    host, port = split_hostport(spec.target)
    prof = MEDIA_PROFILES[spec.profile]
    secret = spec.secret.resolve() if spec.secret else None
    marks = {"main": (spec.dscp_audio, spec.dscp_video), "twin": (0, 0)}
    profs = {"main": prof, "twin": twin_profile(prof)}
    coros = [
        run_call(
            host,
            port,
            profs[name],
            duration_s,
            secret=secret,
            dscp_audio=a,
            dscp_video=v,
            keyframe_offset=i * KEYFRAME_EVERY // 2,
            start_delay_s=i * 0.5 / FPS,
            timeout_s=spec.timeout_s,
            clock=clock,
        )
        for i, (name, (a, v)) in enumerate(marks.items())
    ]
    results = await asyncio.gather(*coros, return_exceptions=True)
    out: dict[str, CallResult] = {}
    for name, r in zip(marks, results, strict=True):
        if isinstance(r, CallFailed):
            raise r
        if isinstance(r, BaseException):
            raise r  # a bug: the agent logs it with its traceback
        out[name] = r
    return out


def _bleached(fields: dict[str, Any], spec: Spec) -> str:
    rx = fields.get("dscp_audio_rx")
    if rx is not None and rx != spec.dscp_audio:
        return f"; EF arrived as DSCP {rx} (marks rewritten on the path)"
    return ""


class _Moved:
    """What a check moved: the calls' IP bytes and packets, the load's payload bytes."""

    def __init__(self) -> None:
        self.ip = self.packets = self.load = 0

    def calls(self, pair: dict[str, CallResult]) -> None:
        self.ip += moved_bytes(list(pair.values()))
        self.packets += sum(r.up_send.sent + int(r.down_send.get("sent", 0)) for r in pair.values())

    def fields(self) -> dict[str, Any]:
        """``bytes`` (what the agent charges: the calls' IP bytes + the load's payload) and
        its parts (``traffic``); none when nothing moved."""
        if not (self.ip or self.load):
            return {}
        return {"bytes": self.ip + self.load, "calls_bytes": self.ip,
                "calls_packets": self.packets, "load_bytes": self.load}  # fmt: skip


def traffic(_spec: Spec, records: Sequence[Record]) -> int:
    """Wire bytes of a check: the calls' IP bytes plus an Ethernet header per packet, and
    the load's payload as TCP on the wire (x 1/0.956, ``budget.tcp_traffic``)."""
    calls = budget.field_total(records, "calls_bytes")
    eth = budget.ETHERNET * budget.field_total(records, "calls_packets")
    return int(calls + eth) + budget.tcp_traffic(records, "load_bytes")


async def _end_load(
    load: dict[str, asyncio.Task[Record]], reserved: int
) -> tuple[dict[str, Record | None], int]:
    """Wait for the load's directions to reach their time cap (``LOAD_GRACE_S`` at most
    after the calls: a direction that does not end is cancelled, its record ``None`` and its
    whole reserve counted as moved). Returns (records by direction, bytes moved)."""
    done, pending = await asyncio.wait(load.values(), timeout=LOAD_TAIL_S + LOAD_GRACE_S)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    recs: dict[str, Record | None] = {}
    moved = 0
    for d, t in load.items():
        rec = t.result() if t in done else None
        recs[d] = rec
        moved += int(rec.fields.get("bytes", 0)) if rec is not None else reserved
    return recs, moved


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """The call and its best-effort twin, idle then under bulk TCP both ways; per direction
    the class figures and the verdict, and one summary record (direction ``both``). A check
    that overruns its schedule by ``WATCHDOG_S`` is stopped: a ``timeout`` record."""
    limit = spec.idle_s + spec.ramp_s + spec.duration_s + WATCHDOG_S
    try:
        return await asyncio.wait_for(_check(ctx, spec), limit)
    except TimeoutError:
        tags = {**ctx.tags, "target": spec.target, "profile": spec.profile, "method": "dscp"}
        return [failure("qos", tags, "timeout", f"the QoS check did not end within {limit:g} s")]


async def _check(ctx: Context, spec: Spec) -> list[Record]:
    tags = {**ctx.tags, "target": spec.target, "profile": spec.profile, "method": "dscp"}
    tp = spec.load_spec()
    ep = throughput.Endpoint.from_spec(tp)  # SecretError (ConfigError) on a bad token
    if spec.secret:
        spec.secret.resolve()
    cap = budget.test_cap_bytes(ctx, spec.max_mb)
    load_cap = int(cap - calls_bytes(spec))
    t_ms = now_ms()
    if load_cap <= 0:
        return [
            failure(
                "qos",
                tags,
                "budget_exceeded",
                f"the calls alone need {calls_bytes(spec) / 1e6:.1f} MB of the {cap / 1e6:g} MB "
                "cap of one test",
                time_ms=t_ms,
            )
        ]
    clock = Clock()
    m = _Moved()
    ctx.note(f"qos: {spec.idle_s:g} s of the call and its best-effort twin on the idle line")
    try:
        idle = await _pair(spec, spec.idle_s, clock)
        m.calls(idle)
        ctx.note(
            f"qos: bulk TCP both ways ({spec.streams} streams each) against {spec.load_target}"
        )
        test_id = secrets.token_hex(8)  # one test at the endpoint, both directions
        load_tags = {**ctx.tags, "target": spec.load_target, "method": "http"}
        load = {
            d: asyncio.create_task(
                throughput.measure_direction(
                    tp, ep, d, load_cap // 2, load_tags, None, test_id, probe_share=QOS_PROBE_SHARE
                )
            )
            for d in ("down", "up")
        }
        try:
            await asyncio.sleep(spec.ramp_s)
            ctx.note(f"qos: {spec.duration_s:g} s of both calls under load")
            loaded = await _pair(spec, spec.duration_s, clock)
            m.calls(loaded)
            ctx.note("qos: calls done; the load ends at its time cap")
        finally:
            load_recs, load_bytes = await _end_load(load, load_cap // 2)
            m.load += load_bytes
    except CallFailed as e:
        return [failure("qos", tags, e.result, e.reason, time_ms=t_ms, **m.fields())]
    for d, r in load_recs.items():
        if r is None:
            why = f"bulk load {d} did not end within {LOAD_TAIL_S + LOAD_GRACE_S:g} s of the calls"
            return [failure("qos", tags, "error", why, time_ms=t_ms, **m.fields())]
        if not r.ok:
            why = f"bulk load {d}: {r.fields.get('reason', r.result)}"
            return [failure("qos", tags, r.result, why, time_ms=t_ms, **m.fields())]
        ran = float(r.fields.get("duration_s", 0.0))
        if ran < spec.ramp_s + spec.duration_s - LOAD_SHORT_S:
            result = "budget_exceeded" if r.fields.get("stop") == "byte_cap" else "error"
            why = (
                f"bulk load {d} stopped after {ran:.1f} s ({r.fields.get('stop')}), before "
                "the loaded calls ended"
            )
            return [failure("qos", tags, result, why, time_ms=t_ms, **m.fields())]
    goodput = {d: r.fields.get("goodput_mbps") for d, r in load_recs.items() if r is not None}
    records: list[Record] = []
    by_dir: dict[str, dict[str, Any]] = {}
    for d in ("up", "down"):
        fl = class_fields(
            {k: getattr(v, d) for k, v in idle.items()},
            {k: getattr(v, d) for k, v in loaded.items()},
        )
        if not any(k.endswith("_added_p50_ms") for k in fl):
            why = next((r.up_error for r in loaded.values() if r.up_error), f"no {d} statistics")
            records.append(failure("qos", {**tags, "direction": d}, "timeout", why, time_ms=t_ms))
            continue
        eff, why = rubric.qos_verdict({d: fl})
        fl.update(
            load_mbps=goodput.get(d),
            duration_s=float(spec.duration_s),
            qos_tested=eff is not None,
            qos_effective=eff,
            qos_reason=why + _bleached(fl, spec),
        )
        by_dir[d] = fl
        records.append(Record("qos", {**tags, "direction": d, "result": "ok"}, fl, t_ms))
    eff, why = rubric.qos_verdict(by_dir)
    bleached = "".join(sorted({_bleached(f, spec) for f in by_dir.values()}))
    summary: dict[str, Any] = {
        "qos_tested": eff is not None,
        "qos_effective": eff,
        "qos_reason": why + bleached,
        **m.fields(),
        "duration_s": float(spec.duration_s),
    }
    records.append(Record("qos", {**tags, "direction": "both", "result": "ok"}, summary, t_ms))
    return records


def _class_metrics() -> tuple[Metric, ...]:
    names = {"ef": "EF (the call's audio)", "af41": "AF41 (the call's video)",
             "be": "best effort (the DSCP 0 twin's audio)"}  # fmt: skip
    out: list[Metric] = []
    for cls in CLASSES:
        n = names[cls]
        out += [
            Metric(f"{cls}_loss_pct", "%", f"{n}: packets lost under load, % of sent"),
            Metric(f"{cls}_added_p50_ms", "ms", f"{n}: median one-way delay under load less "
                   "its idle minimum (the queue's added delay; no clock sync needed)"),
            Metric(f"{cls}_added_p95_ms", "ms", f"{n}: 95th percentile of the same"),
            Metric(f"{cls}_jitter_ms", "ms", f"{n}: RFC 3550 interarrival jitter under load"),
        ]  # fmt: skip
    return tuple(out)


PLUGIN = Plugin(
    kind="probe",
    name="qos",
    spec=Spec,
    run=run,
    measurement="qos",
    method="dscp",
    summary="Does QoS protect the call? EF audio and AF41 video against a best-effort twin "
    "while bulk TCP saturates both directions: loss, added delay, jitter, qos_effective.",
    heavy=True,
    cost=None,
    traffic=traffic,
    interval_s=86400.0,
    fields=(
        *_class_metrics(),
        Metric("dscp_audio_rx", "DSCP", "DSCP the call's audio arrived with (0: bleached on "
               "the path)"),
        Metric("dscp_video_rx", "DSCP", "DSCP the call's video arrived with"),
        Metric("load_mbps", "Mbit/s", "goodput of the bulk TCP load in this direction"),
        Metric("duration_s", "s", "seconds of the calls under load"),
        Metric("qos_effective", "bool", "per direction, and over both (direction=both): EF's "
               "added delay under 5 ms and at most half best effort's, EF loss not above best "
               "effort's (netready/rubric.py qos_verdict); absent when the load built no queue"),
        Metric("qos_tested", "bool", "a direction's best effort queued (added delay >= 5 ms), "
               "so QoS could be judged; false: the load built no queue"),
        Metric("qos_reason", "text", "the verdict in words with its figures"),
        Metric("bytes", "bytes", "IP bytes of the calls + payload bytes of the load, both "
               "directions (direction=both); what the agent charges"),
        Metric("calls_bytes", "bytes", "IP bytes of the call and its twin, idle and loaded, "
               "both directions (payload + 28 B per packet)"),
        Metric("calls_packets", "packets", "media packets the calls sent, both directions"),
        Metric("load_bytes", "bytes", "payload bytes of the bulk TCP load, both directions"),
    ),
)  # fmt: skip
