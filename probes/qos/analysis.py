"""The QoS check's arithmetic, sans-IO: the class figures of one direction from the
statistics of the idle and the loaded calls (``DirectionStats`` per-stream fields), and the
fields of the records. The rule itself (thresholds, wording) is ``netready.rubric.qos_verdict``.

Classes: ``ef`` is the call's audio (DSCP EF by default), ``af41`` its video, ``be`` the audio
of the best-effort twin call (DSCP 0: the same packet size and rate as EF). Added delay is a
class's one-way delay under load less its own idle minimum (both from the same two clocks:
the offset between them cancels, as in the rtt probe's direction split).
"""

from __future__ import annotations

from typing import Any

from netready.probes.media.trace import DirectionStats

#: class -> (call: "main" or "twin", stream: "audio" or "video")
CLASSES: dict[str, tuple[str, str]] = {
    "ef": ("main", "audio"),
    "af41": ("main", "video"),
    "be": ("twin", "audio"),
}


def _jitter(st: DirectionStats, stream: str) -> float | None:
    return st.jitter_rfc3550_ms if stream == "audio" else st.video_jitter_rfc3550_ms


def class_fields(
    idle: dict[str, DirectionStats | None], loaded: dict[str, DirectionStats | None]
) -> dict[str, Any]:
    """The per-class fields of one direction: ``{cls}_loss_pct``, ``{cls}_added_p50_ms``,
    ``{cls}_added_p95_ms``, ``{cls}_jitter_ms`` (absent where a figure is missing), and the
    DSCP the call's audio and video arrived with. ``idle``/``loaded`` map main/twin to that
    direction's statistics."""
    out: dict[str, Any] = {}
    for cls, (call, stream) in CLASSES.items():
        i, ld = idle.get(call), loaded.get(call)
        if ld is None:
            continue
        out[f"{cls}_loss_pct"] = getattr(ld, f"{stream}_loss_pct")
        out[f"{cls}_jitter_ms"] = _jitter(ld, stream)
        base = getattr(i, f"{stream}_owd_min_ms") if i is not None else None
        if base is None:
            continue
        for p in ("p50", "p95"):
            v = getattr(ld, f"{stream}_owd_{p}_ms")
            if v is not None:
                out[f"{cls}_added_{p}_ms"] = max(0.0, v - base)
    main = loaded.get("main")
    if main is not None:
        out["dscp_audio_rx"] = main.dscp_audio_rx
        out["dscp_video_rx"] = main.dscp_video_rx
    return out
