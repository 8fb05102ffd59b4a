"""Responsiveness under working conditions (RPM), IETF draft-ietf-ippm-responsiveness. Sans-IO.

The arithmetic of the draft, apart from the sockets (``probes/throughput/__init__.py`` runs the
probes during the throughput test):

* the draft's parameters (section 4.1 of draft -09): ``MAD`` moving-average distance 4
  intervals, ``ID`` interval duration 1 s, ``TMP`` trimmed-mean percentage 95, ``SDT``
  standard-deviation tolerance 5 %, ``MPS`` at most 100 probes a second, ``PTC`` probes use at
  most 5 % of the measured capacity;
* ``Stability``: an interval's moving average is the mean of its value and the ``MAD - 1``
  before it; the series is stable when the standard deviation of the last ``MAD`` moving
  averages is under ``SDT`` x the newest one (used for goodput and for responsiveness);
* ``trimmed_mean``: the mean of the values after dropping the worst (largest) 5 %;
* ``responsiveness``: foreign RPM = 60000 / mean(TM(tcp_f), TM(tls_f), TM(http_f)) (without TLS
  the mean of the two others), loaded (self) RPM = 60000 / TM(http_s), and the RPM the mean of
  the two (draft -09 section 5.3.1);
* ``probe_gap_s``: the gap between probes that keeps them under MPS and PTC;
* ``confidence``: high / medium / low (see its docstring; the draft asks for a confidence with
  each result and leaves the scale to the implementation);
* ``connect_ms``: a foreign probe's TCP handshake time from the kernel's own measurement when
  it has one (immune to the client's scheduling delay);
* ``unrepaired``: which self probes to keep. The draft's self probes ride the load-generating
  connections, where a lost segment is repaired by fast retransmit within about one round
  trip; ours are ``GET /ping`` on a keep-alive connection of their own (HTTP/1.1 cannot put a
  request beside a body in flight), where nothing follows a lost request or reply, so TCP
  repairs it only by a tail-loss probe or a retransmission timeout (at least 200 ms more). A
  self probe whose request or reply was retransmitted therefore measured that timer, not the
  queue: it is left out and counted (``rpm_probes_retransmitted``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

MAD = 4
ID_S = 1.0
TMP = 0.95
SDT = 0.05
MPS = 100.0
PTC = 0.05
#: bytes on the wire of one foreign probe without TLS: SYN, SYN-ACK, ACK, request, reply,
#: their ACKs and the FIN exchange (~60-byte segments + a ~300-byte request and reply)
FOREIGN_PROBE_BYTES = 1200
#: ... and the TLS 1.3 handshake on top (certificate chain ~3 kB, key shares)
TLS_PROBE_BYTES = 4500
#: at least this many samples of each kind for a result at all
MIN_SAMPLES = 5
#: samples of each kind for a high-confidence result
GOOD_SAMPLES = 20


def trimmed_mean(values: Sequence[float], keep: float = TMP) -> float | None:
    """Mean of the smallest ``keep`` share of ``values`` (the draft trims the top 5 %)."""
    if not values:
        return None
    v = sorted(values)
    n = len(v) - math.floor(len(v) * (1 - keep) + 1e-9)  # drop whole values only
    return sum(v[:n]) / n


@dataclass
class Stability:
    """The draft's moving-average stability rule over one value per interval."""

    mad: int = MAD
    sdt: float = SDT
    values: list[float] = field(default_factory=list)
    averages: list[float] = field(default_factory=list)

    def add(self, value: float) -> bool:
        """Add the value of one interval; True when the series is now stable."""
        self.values.append(value)
        last = self.values[-self.mad :]
        self.averages.append(sum(last) / len(last))
        return self.stable()

    def stable(self) -> bool:
        if len(self.values) < self.mad or len(self.averages) < self.mad:
            return False
        a = self.averages[-self.mad :]
        mean = sum(a) / len(a)
        std = math.sqrt(sum((x - mean) ** 2 for x in a) / len(a))
        return a[-1] > 0 and std < self.sdt * a[-1]


@dataclass
class Probes:
    """Probe samples (ms) with the time they started (s, any monotonic clock)."""

    tcp_f: list[tuple[float, float]] = field(default_factory=list)
    tls_f: list[tuple[float, float]] = field(default_factory=list)
    http_f: list[tuple[float, float]] = field(default_factory=list)
    http_s: list[tuple[float, float]] = field(default_factory=list)

    def since(self, t0: float) -> Probes:
        def cut(xs: list[tuple[float, float]]) -> list[tuple[float, float]]:
            return [x for x in xs if x[0] >= t0]

        return Probes(cut(self.tcp_f), cut(self.tls_f), cut(self.http_f), cut(self.http_s))

    @property
    def foreign(self) -> int:
        return len(self.http_f)

    @property
    def own(self) -> int:
        return len(self.http_s)


@dataclass(frozen=True)
class Result:
    rpm: float
    foreign_rpm: float
    self_rpm: float
    tcp_f_ms: float
    tls_f_ms: float | None
    http_f_ms: float
    http_s_ms: float


def _tm(xs: list[tuple[float, float]]) -> float | None:
    return trimmed_mean([v for _, v in xs])


def responsiveness(p: Probes) -> Result | None:
    """The RPM of a set of probes, or None if a kind has fewer than ``MIN_SAMPLES``."""
    if p.foreign < MIN_SAMPLES or p.own < MIN_SAMPLES:
        return None
    tcp, http_f, http_s = _tm(p.tcp_f), _tm(p.http_f), _tm(p.http_s)
    tls = _tm(p.tls_f) if p.tls_f else None
    assert tcp is not None and http_f is not None and http_s is not None
    parts = [tcp, http_f] if tls is None else [tcp, tls, http_f]
    foreign_ms = sum(parts) / len(parts)
    if foreign_ms <= 0 or http_s <= 0:
        return None
    f_rpm, s_rpm = 60000 / foreign_ms, 60000 / http_s
    return Result((f_rpm + s_rpm) / 2, f_rpm, s_rpm, tcp, tls, http_f, http_s)


def probe_gap_s(capacity_bps: float, probe_bytes: int) -> float:
    """Seconds between two probes so that they stay under ``MPS`` a second and their bytes
    under ``PTC`` of the capacity (a probe is ``probe_bytes`` on the wire)."""
    if capacity_bps <= 0:
        return 1.0
    return max(1 / MPS, probe_bytes * 8 / (PTC * capacity_bps))


def confidence(goodput_stable: bool, rpm_stable: bool, foreign: int, own: int) -> str:
    """``high``: goodput and responsiveness both met the stability rule and each probe kind
    has ``GOOD_SAMPLES``; ``medium``: goodput was stable and each kind has ``MIN_SAMPLES``
    (responsiveness was still moving when the test ended); ``low``: anything less."""
    n = min(foreign, own)
    if goodput_stable and rpm_stable and n >= GOOD_SAMPLES:
        return "high"
    if goodput_stable and n >= MIN_SAMPLES:
        return "medium"
    return "low"


def connect_ms(user_ms: float, kernel_rtt_us: int | None, syn_retransmits: int | None) -> float:
    """A foreign probe's TCP connect time: the kernel's round-trip sample of the handshake
    (``tcpi_rtt`` read before any data, µs, timed by the kernel from SYN to SYN-ACK) when the
    SYN went once, else the time the client saw (a retransmitted SYN waited the kernel's 1 s
    timer, which the kernel's sample leaves out and the draft counts)."""
    if kernel_rtt_us and syn_retransmits == 0 and kernel_rtt_us / 1000 <= user_ms:
        return kernel_rtt_us / 1000
    return user_ms


def unrepaired(own_retransmits: Sequence[int], peer_total: Sequence[int | None]) -> list[bool]:
    """For a series of ``GET /ping`` on one connection, which ones were not slowed by a TCP
    retransmission (True: keep). ``own_retransmits[i]``: segments we retransmitted during ping
    ``i`` (its request); ``peer_total[i]``: the endpoint's cumulative retransmits on the
    connection when it wrote reply ``i`` (None if unknown). The pings are sequential, so a
    rise between reply ``i`` and reply ``i + 1`` is reply ``i`` sent again; the last reply's
    fate is unknown and it is kept."""
    n = len(own_retransmits)
    keep = [own_retransmits[i] == 0 for i in range(n)]
    for i in range(n - 1):
        a, b = peer_total[i], peer_total[i + 1]
        if a is not None and b is not None and b > a:
            keep[i] = False
    return keep


def interval_rpms(p: Probes, t0: float, t1: float, interval_s: float = ID_S) -> list[float]:
    """RPM of each interval from ``t0`` to ``t1`` computed as the draft does, over the probes
    of that interval and the ``MAD - 1`` before it (intervals without enough probes skipped)."""
    out = []
    t = t0 + interval_s
    while t <= t1 + 1e-9:
        lo = t - MAD * interval_s
        win = Probes(
            *[[x for x in xs if lo <= x[0] < t] for xs in (p.tcp_f, p.tls_f, p.http_f, p.http_s)]
        )
        r = responsiveness(win)
        if r is not None:
            out.append(r.rpm)
        t += interval_s
    return out


def rpm_stable(p: Probes, t0: float, t1: float) -> bool:
    s = Stability()
    ok = False
    for v in interval_rpms(p, t0, t1):
        ok = s.add(v)
    return ok
