"""N concurrent calls measured at once (``measure``): the calls on the socket edge
(``call.run_call``), their statistics merged per direction into records, the verdict."""

from __future__ import annotations

import asyncio
from typing import Any

from netready.probes.media.call import CallFailed, CallResult, run_call
from netready.probes.media.spec import IP_UDP_OVERHEAD, Spec, base_tags
from netready.probes.media.verdict import Verdict, evaluate, merge
from netready.probes.media.wire import FPS, KEYFRAME_EVERY, MEDIA_PROFILES

from netready.inventory import split_hostport
from netready.plugin import Context
from netready.records import Record, failure, now_ms


async def _calls(
    spec: Spec, calls: int, duration_s: float
) -> tuple[list[CallResult], list[CallFailed]]:
    """Run ``calls`` calls at once, their key frames and start times spread over a frame."""
    prof = MEDIA_PROFILES[spec.profile]
    host, port = split_hostport(spec.target)
    secret = spec.resolved_secret()
    frame_ns = 1e9 / FPS
    coros = [
        run_call(
            host,
            port,
            prof,
            duration_s,
            secret=secret,
            dscp_audio=spec.dscp_audio,
            dscp_video=spec.dscp_video,
            keyframes=spec.keyframes,
            keyframe_offset=i * KEYFRAME_EVERY // calls,
            start_delay_s=(i * frame_ns / calls) / 1e9,
            timeout_s=spec.timeout_s,
        )
        for i in range(calls)
    ]
    results = await asyncio.gather(*coros, return_exceptions=True)
    ok: list[CallResult] = []
    fails: list[CallFailed] = []
    for r in results:
        if isinstance(r, CallFailed):
            fails.append(r)
        elif isinstance(r, BaseException):
            fails.append(CallFailed("error", f"{type(r).__name__}: {r}"))
        else:
            ok.append(r)
    return ok, fails


def moved_bytes(ok: list[CallResult]) -> int:
    """IP bytes the calls moved, both directions."""
    return sum(
        r.up_send.bytes
        + IP_UDP_OVERHEAD * r.up_send.sent
        + int(r.down_send.get("bytes", 0))
        + IP_UDP_OVERHEAD * int(r.down_send.get("sent", 0))
        for r in ok
    )


def _direction(
    d: str, ok: list[CallResult], spec: Spec, calls: int, duration_s: float
) -> dict[str, Any] | str:
    """The merged fields of direction ``d`` over the calls, or why there are none."""
    dirs = [getattr(r, d) for r in ok if getattr(r, d) is not None]
    if d == "up":
        sends = [(r.up_send.sent_kbps, r.up_send.late_p95_ms) for r in ok]
        errs = sum(r.up_send.errors for r in ok)
    else:
        sends = [(r.down_send.get("sent_kbps"), r.down_send.get("late_p95_ms")) for r in ok]
        errs = sum(int(r.down_send.get("errors") or 0) for r in ok)
    if not dirs:
        return next((r.up_error for r in ok if r.up_error), f"no {d} statistics")
    fl = merge(dirs, duration_s)
    skbps = [s for s, _ in sends if s is not None]
    late = [x for _, x in sends if x is not None]
    fl.update(
        calls=calls,
        duration_s=float(duration_s),
        offered_kbps=MEDIA_PROFILES[spec.profile].kbps,
        sent_kbps=min(skbps) if skbps else None,
        send_late_p95_ms=max(late) if late else None,
        send_errors=errs,
        latency_basis="rtt/2",
    )
    return fl


def _verdict_record(
    tags: dict[str, str], verdict: Verdict, calls: int, moved: int, t_ms: int
) -> Record:
    return Record(
        "media",
        {**tags, "gate": "minimum", "result": "ok"},
        {
            "passed": verdict.passed,
            "tier": verdict.tier,
            "reasons": "; ".join(verdict.reasons) or "all minimum gates met",
            "recommended_reasons": "; ".join(verdict.recommended_reasons)
            or "all recommended gates met",
            "calls": calls,
            "bytes": moved,
        },
        t_ms,
    )


async def measure(
    ctx: Context, spec: Spec, calls: int, duration_s: float, method: str = "udp"
) -> tuple[list[Record], Verdict | None, str | None, int]:
    """Run ``calls`` concurrent calls. Returns (records, verdict or None, failure result,
    bytes moved)."""
    tags = {**base_tags(ctx, spec), "method": method}
    t_ms = now_ms()
    ok, fails = await _calls(spec, calls, duration_s)
    moved = moved_bytes(ok)
    if fails:
        f = fails[0]
        more = f" ({len(fails)} of {calls} calls failed)" if calls > 1 else ""
        rec = failure(
            "media",
            tags,
            f.result,
            f.reason + more,
            time_ms=t_ms,
            calls=calls,
            bytes=moved or None,  # type: ignore[arg-type]
        )
        return [rec], None, f.result, moved
    records: list[Record] = []
    fields_by_dir: dict[str, dict[str, Any]] = {}
    for d in ("up", "down"):
        fl = _direction(d, ok, spec, calls, duration_s)
        if isinstance(fl, str):
            records.append(
                failure("media", {**tags, "direction": d}, "timeout", fl, time_ms=t_ms, calls=calls)
            )
            continue
        fields_by_dir[d] = fl
        records.append(Record("media", {**tags, "direction": d, "result": "ok"}, fl, t_ms))
    verdict = evaluate(fields_by_dir)
    records.append(_verdict_record(tags, verdict, calls, moved, t_ms))
    return records, verdict, None, moved
