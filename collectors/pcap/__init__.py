"""RTP stream analysis of captured calls (pcap / pcapng, plain, gzip or zstd), as Wireshark's
RTP stream analysis.

``netready pcap analyse FILE`` reads a capture made at a site (tcpdump, dumpcap, Wireshark),
finds every RTP stream in it and reports, per stream, what a patient on that call got:
packets, loss, duplicates, burst loss, reordering, RFC 3550 jitter (mean and maximum of the
running estimate, the way Wireshark's ``tap-rtp-analysis.c`` computes them), maximum delta
and longest gap, bit rate, what RTCP receiver reports said, and an E-model MOS estimate.

The folder (see docs/pcap.md), all sans-IO but the file reading in ``capture.py``:

- ``capture.py``: pcap/pcapng records, gzip/zstd (``iter_frames``, ``CaptureError``);
- ``decode.py``: link layer, IPv4/IPv6, UDP/TCP, TURN and RFC 4571 framing;
- ``sdp.py``: clock rates from SIP/SDP ``a=rtpmap`` in the capture;
- ``rtcp.py``: RTCP sender/receiver reports (fraction lost, jitter, round trip);
- ``stream.py``: one stream's loss, duplicates, jitter, delta, gaps; the clock guess;
- ``analysis.py``: ``analyse`` (the fused fast loop and the general path);
- this file: the plugin declaration, records and the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netready.collectors.pcap.analysis import (
    MAX_STREAMS,
    Analysis,
    StreamResult,
    analyse,
    parse_clock,
)
from netready.collectors.pcap.capture import CaptureError, iter_frames
from netready.collectors.pcap.decode import endpoints
from netready.collectors.pcap.stream import (
    DYNAMIC_CANDIDATES,
    PT_NAMES,
    STATIC_CLOCK,
    StreamState,
    guess_clock,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready.errors import ParseError
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure

__all__ = [
    "DYNAMIC_CANDIDATES", "MAX_STREAMS", "PLUGIN", "PT_NAMES", "STATIC_CLOCK", "Analysis",
    "CaptureError", "Spec", "StreamResult", "StreamState", "analyse", "endpoints",
    "guess_clock", "iter_frames", "parse_clock", "run", "table_rows", "to_records",
]  # fmt: skip


# --------------------------------------------------------------------------- records

MEASUREMENT = "rtp_stream"


def to_records(results: list[StreamResult], base_tags: Mapping[str, str] | None = None
               ) -> list[Record]:  # fmt: skip
    """One ``rtp_stream`` record per stream.

    Tag ``stream`` is the media kind (audio / video / unknown): low cardinality, so Grafana
    can group by it. SSRC, addresses and ports change every call and are fields: as tags
    they would create a new series per call and blow up InfluxDB's series index.
    Two streams of the same kind starting in the same millisecond would share series and
    timestamp (and overwrite each other), so later ones are moved on by 1 ms.
    """
    out: list[Record] = []
    used: set[tuple[str, int]] = set()
    for r in results:
        t = r.start_time_ms
        while (r.media, t) in used:
            t += 1
        used.add((r.media, t))
        fields: dict[str, Any] = {k: v for k, v in r.to_json().items() if v is not None}
        fields["clock_hz"] = r.clock_hz
        tags = {**(base_tags or {}), "stream": r.media, "source": "pcap"}
        out.append(Record(MEASUREMENT, tags, fields, t))
    return out


class Spec(BaseModel):
    """Analyse one capture file."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="pcap or pcapng file (also gzip- or zstd-compressed)", json_schema_extra={"cli": "FILE"})
    clock: dict[int, int] = Field(
        default_factory=dict,
        description="clock rate of a payload type, PT=HZ, e.g. 96=90000 (repeatable); else the "
        "capture's SDP, RFC 3551 for static types, a guess for other dynamic types",
        json_schema_extra={"cli": "--clock", "metavar": "PT=HZ"},
    )
    latency_ms: float = Field(
        0.0, ge=0, description="one-way delay to assume for the MOS (a capture cannot measure it)"
    )
    min_packets: int = Field(2, ge=2, description="ignore streams with fewer RTP packets")
    max_streams: int = Field(
        MAX_STREAMS,
        ge=1,
        le=10_000_000,
        description="most streams tracked (about 4 kB each); further streams are counted only",
    )

    @field_validator("clock")
    @classmethod
    def _clock_ok(cls, v: dict[int, int]) -> dict[int, int]:
        for pt, hz in v.items():
            if not 0 <= pt <= 127 or not 1000 <= hz <= 10_000_000:
                raise ValueError(f"clock {pt}={hz}: payload type 0-127, rate 1000-10000000 Hz")
        return v


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """RTP streams of a captured call (one ``rtp_stream`` record per stream)."""
    import asyncio  # here, not at the top: keeps `netready pcap` start-up short

    tags = {**ctx.tags, "source": "pcap"}
    try:
        res = await asyncio.to_thread(
            analyse, spec.path, spec.clock, spec.latency_ms, spec.min_packets, None,
            spec.max_streams,
        )  # fmt: skip
    except ParseError as e:
        return [failure(MEASUREMENT, tags, "error", str(e))]
    out = to_records(res, ctx.tags)
    if res.note:
        out.append(failure(MEASUREMENT, tags, "skipped", res.note,
                           untracked_streams=res.untracked_streams,
                           untracked_packets=res.untracked_packets))  # fmt: skip
    return out


PLUGIN = Plugin(
    kind="collector",
    name="pcap",
    spec=Spec,
    run=run,
    measurement=MEASUREMENT,
    method="pcap",
    summary="RTP streams of a captured call (pcap or pcapng), as Wireshark's RTP stream "
    "analysis: loss, burst loss, reorder, jitter, bit rate, MOS.",
    fields=(
        Metric("ssrc", "text", "SSRC as 0x + 8 lower-case hex digits"),
        Metric("src", "text", "source ip:port ([v6]:port for IPv6)"),
        Metric("dst", "text", "destination ip:port"),
        Metric("payload_type", "PT", "payload type of the first packet"),
        Metric("clock_hz", "Hz", "RTP clock rate used (--clock, the capture's SDP, RFC 3551, "
               "or guessed)"),
        Metric("packets", "packets", "RTP packets received (duplicates included, as Wireshark)"),
        Metric("expected", "packets", "highest - lowest extended sequence number + 1 (RFC 3550 "
               "A.3), summed over sender restarts"),
        Metric("lost", "packets", "sequence numbers in that range never received (or too late)"),
        Metric("loss_pct", "%", "100 x lost / expected"),
        Metric("duplicates", "packets", "copies of a packet already received (same sequence "
               "number, timestamp, length and last 8 bytes); never counted as loss"),
        Metric("jitter_mean_ms", "ms", "Wireshark's Mean Jitter: mean of the running RFC 3550 "
               "estimate"),
        Metric("jitter_max_ms", "ms", "Wireshark's Max Jitter: maximum of the running estimate"),
        Metric("max_delta_ms", "ms", "Wireshark's Max Delta: longest arrival gap before a "
               "regular packet (no marker, no comfort noise)"),
        Metric("gap_max_ms", "ms", "longest arrival gap between any two packets (a freeze "
               "or silence, even with no loss)"),
        Metric("max_burst_loss", "packets", "longest run of consecutive lost sequence numbers"),
        Metric("reorder", "packets", "packets that arrived after a higher sequence number"),
        Metric("duration_s", "s", "last - first arrival"),
        Metric("bitrate_kbps", "kbit/s", "(RTP bytes + IP/UDP headers) x 8 / duration"),
        Metric("mos_emodel", "1-4.5", "E-model MOS estimate; media later than a 100 ms playout "
               "buffer counts as loss (see docs/pcap.md)"),
        Metric("transport", "text", "udp, turn (TURN Send/Data/ChannelData over UDP), tcp "
               "(RFC 4571) or turn-tcp"),
        Metric("rtcp_reports", "reports", "RTCP SR/RR report blocks about this stream"),
        Metric("rtcp_loss_max_pct", "%", "worst fraction lost an RTCP report gave"),
        Metric("rtcp_jitter_max_ms", "ms", "worst interarrival jitter an RTCP report gave"),
        Metric("rtcp_rtt_ms", "ms", "mean round trip from the reports' LSR/DLSR, on the "
               "capture's clock"),
        Metric("untracked_streams", "streams", "result=skipped: further streams not analysed "
               "(beyond max_streams)"),
        Metric("untracked_packets", "packets", "result=skipped: their RTP-like packets"),
    ),
)  # fmt: skip


# --------------------------------------------------------------------------- table

#: Column heads of the stream table ``netready pcap analyse`` prints (``table_rows``).
TABLE_COLUMNS = ("SSRC", "Source", "Destination", "PT", "Clock", "Pkts", "Lost", "Loss%",
                 "Dups", "Burst", "Reord", "Jit mean", "Jit max", "Max delta", "Gap",
                 "Secs", "kbit/s", "MOS")  # fmt: skip


def table_rows(results: list[StreamResult]) -> list[tuple[str, ...]]:
    """One row of cells per stream, under ``TABLE_COLUMNS``: the payload type with its RFC
    3551 name, a guessed clock rate marked ``*``, figures rounded for people."""
    rows: list[tuple[str, ...]] = []
    for r in results:
        name = PT_NAMES.get(r.payload_type, "dyn" if r.payload_type >= 96 else "?")
        clk = f"{r.clock_hz}" + {"guessed": "*", "sdp": "s", "event": "e"}.get(r.clock_source, "")
        rows.append((
            r.ssrc, r.src, r.dst, f"{r.payload_type} {name}", clk, str(r.packets),
            str(r.lost), f"{r.loss_pct:.2f}", str(r.duplicates), str(r.max_burst_loss),
            str(r.reorder), f"{r.jitter_mean_ms:.3f}", f"{r.jitter_max_ms:.3f}",
            f"{r.max_delta_ms:.1f}", f"{r.gap_max_ms:.1f}", f"{r.duration_s:.2f}",
            f"{r.bitrate_kbps:.1f}", f"{r.mos_emodel:.2f}",
        ))  # fmt: skip
    return rows
