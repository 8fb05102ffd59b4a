"""The video-consultation probe (``netready probe media``): an emulated call, both directions.

Sends what a real 1:1 video consultation sends, upstream and downstream at once, against a
media responder (``netready responder``):

- audio: one packet every 20 ms (160 bytes of G.711-like payload + 12 bytes RTP-like header,
  68.8 kbit/s of UDP payload), marked DSCP EF (46) by default;
- video: 30 frames/s at the profile rate (SD 0.5, HD 1.5, FHD 2.5 Mbit/s of UDP payload),
  each frame split into equal packets of at most 1,200 bytes sent back to back (a per-frame
  burst); every 60th frame is a key frame three times the size (the others shrink so the
  average rate holds); marked AF41 (34).

The receiver of each direction timestamps every packet (kernel ``SO_TIMESTAMPNS``), and
records the DSCP it arrived with. Statistics need no clock sync: jitter and delay variation
use differences only; the RTT comes from an echo carried in every packet (the sender's last
received peer timestamp and how long it held it, as in NTP/TWAMP), measured *under the load
of the call*. MOS uses one-way latency = RTT p50 / 2.

A hello is first answered with ``retry {sid, cookie}`` (no larger than the hello); the probe
repeats the hello with the cookie, proving it receives at its address, and only then does
the responder accept and stream. The packet layout is in ``wire.py``.

The folder:

- ``wire.py``: the packet layout, the hello/retry/stop messages, the profiles and the send
  schedule, sans-IO; the responder (``servers/``) imports it;
- ``trace.py``: the receive trace and its statistics (``RxTrace``, ``trace_stats``), sans-IO;
- ``verdict.py``: MOS per call, the calls of a direction merged, the rubric gates, sans-IO;
- ``stream.py``: the socket primitives both ends share (kernel timestamps, the paced sender);
- ``call.py``: one call against a responder (``run_call``), the probe's socket edge;
- ``spec.py``: the options and the byte cost; ``probe.py``: N calls at once (``measure``);
  ``capacity.py``: the concurrent-call capacity search;
- this module: ``run`` and the plugin's declaration.
"""

from __future__ import annotations

from collections.abc import Sequence

from netready.probes.media.call import CallFailed, CallResult, run_call
from netready.probes.media.capacity import find_capacity
from netready.probes.media.probe import measure
from netready.probes.media.spec import IP_UDP_OVERHEAD, Spec, call_bytes, cap_bytes, cost
from netready.probes.media.stream import (
    Clock,
    Echo,
    SendResult,
    open_media_socket,
    send_stream,
)
from netready.probes.media.trace import (
    PLAYOUT_FIELDS,
    Arrival,
    DirectionStats,
    Layout,
    RxTrace,
    trace_stats,
)
from netready.probes.media.verdict import GATES, TIERS, Verdict, evaluate, merge, mos_of
from netready.probes.media.wire import (
    AUDIO_INTERVAL_NS,
    AUDIO_PACKET,
    FPS,
    HEADER_SIZE,
    KEYFRAME_EVERY,
    KIND_CONTROL,
    KIND_MEDIA,
    MAGIC,
    MAX_CONTROL,
    MAX_PACKET,
    MEDIA_PROFILES,
    PROTOCOL_VERSION,
    STREAM_AUDIO,
    STREAM_VIDEO,
    Hello,
    MediaProfile,
    Stop,
    canonical,
    first_error,
    frame_packets,
    pack_control,
    pack_media,
    parse_control,
    parse_media,
    request_problem,
    schedule,
    schedule_packets,
    sign,
    verify,
)

from netready import budget
from netready.plugin import Context, Metric, Plugin
from netready.records import Record

__all__ = [
    "AUDIO_INTERVAL_NS",
    "AUDIO_PACKET",
    "FPS",
    "GATES",
    "HEADER_SIZE",
    "IP_UDP_OVERHEAD",
    "KEYFRAME_EVERY",
    "KIND_CONTROL",
    "KIND_MEDIA",
    "MAGIC",
    "MAX_CONTROL",
    "MAX_PACKET",
    "MEDIA_PROFILES",
    "PLAYOUT_FIELDS",
    "PLUGIN",
    "PROTOCOL_VERSION",
    "STREAM_AUDIO",
    "STREAM_VIDEO",
    "TIERS",
    "Arrival",
    "CallFailed",
    "CallResult",
    "Clock",
    "DirectionStats",
    "Echo",
    "Hello",
    "Layout",
    "MediaProfile",
    "RxTrace",
    "SendResult",
    "Spec",
    "Stop",
    "Verdict",
    "call_bytes",
    "canonical",
    "cap_bytes",
    "cost",
    "evaluate",
    "find_capacity",
    "first_error",
    "frame_packets",
    "measure",
    "merge",
    "mos_of",
    "open_media_socket",
    "pack_control",
    "pack_media",
    "parse_control",
    "parse_media",
    "request_problem",
    "run",
    "run_call",
    "schedule",
    "schedule_packets",
    "send_stream",
    "sign",
    "trace_stats",
    "verify",
]  # fmt: skip


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Emulated video consultation(s) against a media responder, both directions at once.

    The byte cap of a plain run is the budget's business (its ``cost`` is known before it
    starts: ``netready.budget.admit``); a capacity search meters itself against the cap.
    """
    spec.resolved_secret()  # a bad secret reference is a config error (SecretError)
    if spec.find_capacity:
        return await find_capacity(ctx, spec)
    recs, *_ = await measure(ctx, spec, spec.calls, spec.duration_s)
    return recs


_DIR = "per direction of the call(s) (direction tag up|down)"
_GATE = "the minimum-gate verdict (gate=minimum)"
_CAP = "a capacity search (method=find_capacity)"


def traffic(spec: Spec, records: Sequence[Record]) -> int:
    """The IP bytes of every call measurement, both directions (``bytes``: payload + 28 B of
    IPv4/UDP per packet; a capacity search's steps each have theirs, its summary's
    ``bytes_moved`` is not added again), plus the Ethernet header of every media packet sent
    (``sent`` of each direction)."""
    return int(
        budget.field_total(records, "bytes") + budget.ETHERNET * budget.field_total(records, "sent")
    )


PLUGIN = Plugin(
    kind="probe",
    name="media",
    spec=Spec,
    run=run,
    measurement="media",
    method="udp",
    summary="Emulated video consultations against a media responder, both directions at once: "
    "loss, jitter, MOS, DSCP, and the concurrent-call capacity (--find-capacity).",
    heavy=True,
    cost=cost,
    interval_s=3600.0,
    traffic=traffic,
    fields=(
        Metric("calls", "calls", "concurrent calls in this measurement"),
        Metric("sent", "packets", f"media packets sent (audio + video), {_DIR}"),
        Metric("received", "packets", "media packets received"),
        Metric("duplicates", "packets", "media packets received more than once"),
        Metric("loss_pct", "%", "100 x (sent - received) / sent"),
        Metric("loss_15s_worst_pct", "%", "worst loss over 15 s windows of send time "
               "(rubric: loss)"),
        Metric("burst_loss_200ms_worst_pct", "%", "worst loss over 200 ms windows of send time "
               "(rubric: burst loss)"),
        Metric("max_burst_lost", "packets", "longest run of consecutive lost packets"),
        Metric("reorder_pct", "%", "packets arriving after a later-sent one (RFC 4737, "
               "simplified)"),
        Metric("jitter_rfc3550_ms", "ms", "RFC 3550 section 6.4.1 interarrival jitter of the "
               "audio stream: mean of the running J"),
        Metric("jitter_rfc3550_15s_worst_ms", "ms", "worst 15 s window (by arrival) of that "
               "mean (rubric: jitter)"),
        Metric("video_jitter_rfc3550_ms", "ms", "the same for the video packets (includes "
               "burst serialisation)"),
        Metric("ipdv_p95_ms", "ms", "p95 of |IPDV| (RFC 3393) between consecutive received "
               "audio packets"),
        Metric("pdv_p95_ms", "ms", "p95 of delay - min delay over all packets (RFC 5481 PDV): "
               "queueing"),
        Metric("rtt_p50_ms", "ms", "median RTT under the load of the call, from the echo "
               "every packet carries"),
        Metric("rtt_p95_ms", "ms", "95th percentile of the same"),
        Metric("voice_mos_g107", "1-5", "ITU-T G.107 MOS of the audio as the receiver model "
               "plays it (playout.py): mouth-to-ear = RTT p50/2 + jitter buffer + codec frame, "
               "Ppl = lost + discarded, BurstR of that trace; the worst call's"),
        Metric("voice_codec", "text", "the codec the E-model assumes (netready.stats.CODECS: "
               "g711_plc, G.113 Appendix I Ie 0, Bpl 25.1)"),
        Metric("voice_burst_r", "ratio", "G.107 BurstR of the audio played/not played (1: "
               "random loss)"),
        Metric("audio_discard_pct", "%", "audio packets that arrived after their play-out "
               "deadline (adaptive jitter buffer, playout.py), % of audio sent"),
        Metric("audio_buffer_ms", "ms", "mean target delay of that jitter buffer"),
        Metric("video_discard_pct", "%", "video packets of complete frames that finished after "
               "the frame's deadline, % of video sent"),
        Metric("freeze_count", "freezes", "gaps between rendered frames of at least max(3 x "
               "mean frame interval, mean + 150 ms) (W3C webrtc-stats); the worst call's"),
        Metric("freeze_total_ms", "ms", "total length of those freezes"),
        Metric("freeze_longest_ms", "ms", "the longest freeze"),
        Metric("frames_rendered_pct", "%", "video frames complete by their deadline"),
        Metric("latency_basis", "text", "rtt/2: the one-way latency fed to the E-model"),
        Metric("achieved_kbps", "kbit/s", "UDP payload received / duration, per call"),
        Metric("offered_kbps", "kbit/s", "the profile's rate per call"),
        Metric("sent_kbps", "kbit/s", "what the sender actually sent (slowest call)"),
        Metric("send_late_p95_ms", "ms", "p95 of the sender's wake-up lateness"),
        Metric("send_errors", "packets", "packets the sender's own socket refused (not network "
               "loss; any > 0 makes the verdict not valid)"),
        Metric("dscp_audio_rx", "DSCP", "DSCP most audio packets arrived with"),
        Metric("dscp_video_rx", "DSCP", "DSCP most video packets arrived with"),
        Metric("dscp_preserved", "bool", "every audio packet arrived with dscp_audio and every "
               "video packet with dscp_video"),
        Metric("dscp_note", "text", "'not measurable here' when the receiving host cannot read "
               "the DSCP of what arrives (no IP_RECVTOS: Windows, or NETREADY_PLATFORM_OFF="
               "dscp_read); the dscp_* fields are then absent"),
        Metric("duration_s", "s", "seconds per call"),
        Metric("host_drops", "packets", "packets the receiving host's socket buffer dropped "
               "(SO_RXQ_OVFL; not network loss; any > 0 makes the verdict not valid)"),
        Metric("passed", "bool", f"{_GATE}: both directions meet every minimum gate"),
        Metric("tier", "text", "worst rubric band over the gates: recommended, minimum, "
               "marginal or not_ready"),
        Metric("reasons", "text", "failures against the minimum tier, measured vs threshold"),
        Metric("recommended_reasons", "text", "what misses the recommended tier"),
        Metric("bytes", "bytes", "IP bytes this measurement moved, both directions (payload + "
               "28 B per packet); what the agent charges"),
        Metric("capacity_calls", "calls", f"{_CAP}: the largest number of concurrent calls that "
               "met the minimum gates (0: not even one)"),
        Metric("search_complete", "bool", "false if a budget, max_calls or a refusal ended the "
               "search early"),
        Metric("limit_reason", "text", "why the next count failed"),
        Metric("steps", "text", "the counts tried and their outcome, e.g. 1:pass,2:pass,4:fail,3:pass"),
        Metric("step_duration_s", "s", "seconds per search step"),
        Metric("elapsed_s", "s", "seconds the search took"),
        Metric("bytes_moved", "bytes", "IP bytes of the whole search (the sum of the steps' "
               "bytes; not named bytes so it is not charged twice)"),
        Metric("per_call_kbps", "kbit/s", "the profile rate per call and direction"),
        Metric("capacity_calls_min", "calls", "a search that could not run one step within "
               "its budgets: the capacity known so far (0)"),
    ),
)  # fmt: skip
