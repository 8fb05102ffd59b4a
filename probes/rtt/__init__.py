"""Probe "rtt": isochronous UDP round trips in TWAMP-light format (RFC 5357 test packets).

Sends ``rate_pps`` packets/s for ``duration_s`` seconds to a TWAMP-light reflector
(``netready reflector`` or a router's own), then waits ``timeout_s`` for stragglers.
Writes one record per ``window_s`` (default 15 s, the window the quality targets are defined
over) of sending, stamped at the window's start; a run shorter than a window gives one record.

Records: measurement ``rtt`` (tags: site, icb, tech, target, method=twamp_light, result);
the fields are declared below and tabled in README.md.

A reflector that never answers gives ``result=timeout``; a refused port (ICMP unreachable)
``result=refused``; an unresolvable name or an address with no route ``result=unreachable``.
IPv4 and IPv6 (``[2001:db8::1]:862``, ``[fe80::1%eth0]:862``).

The folder:

- ``twamp.py``: the test packets, sans-IO; the reflector (``servers/reflector.py``) shares it;
- ``analysis.py``: a run's statistics, sans-IO (``summarise``, ``windows``);
- ``spec.py``: the options;
- ``probe.py``: the socket edge (``measure``) and ``run``.
"""

from __future__ import annotations

from collections.abc import Sequence

from netready.probes.rtt import twamp
from netready.probes.rtt.analysis import Reply, Trace, summarise, windows
from netready.probes.rtt.probe import measure, run
from netready.probes.rtt.spec import Spec

from netready import budget
from netready.plugin import Metric, Plugin
from netready.records import Record

__all__ = ["PLUGIN", "Reply", "Spec", "Trace", "measure", "run", "summarise", "twamp", "windows"]


def traffic(spec: Spec, records: Sequence[Record]) -> int:
    """Every test packet there and back (the reply is as large): ``sent`` x 2 x (``size`` +
    UDP, IPv4 and Ethernet headers)."""
    return budget.echo_traffic(records, spec.size)


PLUGIN = Plugin(
    kind="probe",
    name="rtt",
    spec=Spec,
    run=run,
    measurement="rtt",
    method="twamp_light",
    summary="Isochronous UDP round trips to a TWAMP-light reflector: RTT, RFC 3550 jitter, "
    "IPDV, loss, burst loss, reorder.",
    interval_s=300.0,
    traffic=traffic,
    fields=(
        Metric("sent", "packets", "test packets sent"),
        Metric("received", "packets", "distinct replies received"),
        Metric("duplicates", "packets", "replies received more than once"),
        Metric("loss_pct", "%", "100 x (sent - received) / sent"),
        Metric(
            "rtt_min_ms",
            "ms",
            "smallest round trip on the sender's monotonic clock, less the reflector's "
            "turnaround time",
        ),
        Metric("rtt_p50_ms", "ms", "median round trip (as rtt_min_ms)"),
        Metric("rtt_p95_ms", "ms", "95th percentile round trip"),
        Metric("rtt_max_ms", "ms", "largest round trip"),
        Metric("rtt_mean_ms", "ms", "mean round trip"),
        Metric(
            "jitter_rfc3550_ms",
            "ms",
            "RFC 3550 interarrival jitter of the round-trip times less the reflector's "
            "turnaround (D = RTT_i - RTT_i-1 in sending order, J += (|D| - J)/16): mean of "
            "the running J, its first 48 values left out",
        ),
        Metric(
            "jitter_up_rfc3550_ms",
            "ms",
            "the same on the forward path (sender timestamp -> reflector receive timestamp, "
            "the kernel's where the reflector reads it)",
        ),
        Metric(
            "jitter_down_rfc3550_ms",
            "ms",
            "the same on the return path (reflector send timestamp -> our kernel receive time)",
        ),
        Metric("ipdv_p95_ms", "ms", "95th percentile of |IPDV| (RFC 3393) of RTTs, by sequence"),
        Metric("burst_loss_200ms_pct", "%", "worst loss over 200 ms windows of send time"),
        Metric("reorder_pct", "%", "replies that arrived after a later-sent one"),
        Metric("duration_s", "s", "send duration of the window"),
        Metric(
            "owd_clock",
            "text",
            "variation: the owd_* fields are one-way delay variation "
            "above the run's minimum (the clocks are not synchronised), not absolute delay",
        ),
        Metric(
            "owd_up_p50_ms",
            "ms",
            "median upstream delay above the run's minimum "
            "(reflector receive - our send, less its minimum): the upload queue",
        ),
        Metric(
            "owd_down_p50_ms",
            "ms",
            "median downstream delay above the run's minimum "
            "(our receive - reflector send, less its minimum): the download queue",
        ),
        Metric("owd_up_p95_ms", "ms", "95th percentile of the same, upstream"),
        Metric("owd_down_p95_ms", "ms", "95th percentile of the same, downstream"),
        Metric(
            "owd_up_share",
            "0-1",
            "owd_up_p50_ms / (owd_up_p50_ms + owd_down_p50_ms): "
            "the share of the added delay that is upstream",
        ),
        Metric(
            "congested",
            "text",
            "up, down, both or none: the direction holding >= 70 % "
            "of the added delay (none under 5 ms in all)",
        ),
    ),
)
