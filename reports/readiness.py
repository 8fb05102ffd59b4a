"""The readiness model: evidence from the store -> a verdict per site, with reasons.

Steps (``assess_estate``):

1. The window: ``since`` back from ``now``; per site, its clinic sessions (one per clinic day,
   local time ``Europe/London``, DST-correct) or, for round-the-clock profiles, the whole window.
2. Evidence, aggregated in the store (``reports/query.py``):
   - ``rtt`` per site per session: p95 over the 15 s windows of the window's median RTT,
     RFC 3550 jitter, loss; p95 of burst loss and reorder. A site's figure is the **median over
     its clinic sessions** of the session figure ("on a typical clinic day, 95 % of 15 s windows
     were at or below ..."); the worst session is kept too.
   - ``throughput`` per direction over the whole window (heavy tests run outside clinic hours by
     design): p10 ("sustained") of ``goodput_mbps``; ``link_busy`` and other invalid
     samples are excluded and counted.
   - ``media``: p10 of ``voice_mos_g107`` per direction and of ``capacity_calls`` over the whole window.
   - failures by ``result``; the newest valid measurement; the router-detected access tech.
3. Gates (``netready/rubric.py``), capacity, verdict, confidence.

Capacity (per concurrent call, docs/design.md): measured ``capacity_calls`` (media probe, p10 of its
runs) when there is any; else ``floor(0.75 × p10 / per-call rate)`` per direction at the
profile's recommended per-call rate, the smaller; else none. The source is always stated.

Verdicts:
- NO DATA: nothing could be judged (no valid or failed measurement in the window).
- NOT READY: a gate is past its not-ready bound; or every rtt run failed; or the planned clinics
  get less than the not-ready bandwidth per call.
- MARGINAL: a gate between not-ready and minimum; or capacity < planned clinics while each planned
  call still gets at least the not-ready bandwidth; or part of the evidence is missing.
- READY: every gate meets its minimum and capacity ≥ planned clinics.
- STALE: the newest valid measurement is older than ``STALE_AFTER``; ``assessed`` keeps what the
  evidence said.

MOS: the ITU-T G.107 E-model (``netready.stats.emodel_mos``) with **one-way latency = RTT / 2**
(the rtt probe measures round trips), the jitter and the loss above; media-probe MOS is reported
beside it when present and used only when there is no rtt evidence.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from netready.reports.query import Agg, AggRows, Store

from netready import rubric, stats
from netready.inventory import COPPER_TECHS, DAYS, FIBRE_TECHS, ClinicHours, Inventory, Site
from netready.rubric import HEADROOM, PROFILES, Profile, Threshold

TZ = ZoneInfo("Europe/London")

READY, MARGINAL, NOT_READY, NO_DATA, STALE = "READY", "MARGINAL", "NOT READY", "NO DATA", "STALE"
VERDICTS = (READY, MARGINAL, NOT_READY, STALE, NO_DATA)
#: severity order for "the worst of"
_SEV = {READY: 0, MARGINAL: 1, NOT_READY: 2}
_BAND_VERDICT = {
    "recommended": READY,
    "minimum": READY,
    "marginal": MARGINAL,
    "not_ready": NOT_READY,
    "no_data": MARGINAL,
    "info": READY,
}


# ----------------------------------------------------------------------------- window


@dataclass(frozen=True)
class Window:
    now_ms: int
    since: dt.timedelta

    @property
    def t0(self) -> int:
        return self.now_ms - int(self.since.total_seconds() * 1000)

    @property
    def t1(self) -> int:
        return self.now_ms + 1  # include a point stamped exactly "now"


def parse_since(text: str) -> dt.timedelta:
    """``14d``, ``36h``, ``90m``, ``2w`` -> timedelta. ValueError with a one-line message."""
    t = text.strip().lower()
    units = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
    if len(t) < 2 or t[-1] not in units:
        raise ValueError(f"--since {text!r}: use a number and a unit, e.g. 14d, 36h, 90m")
    try:
        n = float(t[:-1])
    except ValueError:
        raise ValueError(f"--since {text!r}: use a number and a unit, e.g. 14d, 36h") from None
    if not 0 < n * units[t[-1]] <= 400 * 86400:
        raise ValueError(f"--since {text!r}: must be between 1 s and 400 days")
    return dt.timedelta(seconds=n * units[t[-1]])


def clinic_sessions(
    hours: ClinicHours, t0_ms: int, t1_ms: int, tz: dt.tzinfo = TZ
) -> list[tuple[int, int]]:
    """Clinic sessions [start, end) in UTC ms that overlap [t0, t1), clipped to it."""
    out = []
    d = dt.datetime.fromtimestamp(t0_ms / 1000, tz).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(t1_ms / 1000, tz).date()
    while d <= last:
        if DAYS[d.weekday()] in hours.days:
            a = int(dt.datetime.combine(d, hours.start, tz).timestamp() * 1000)
            b = int(dt.datetime.combine(d, hours.end, tz).timestamp() * 1000)
            a, b = max(a, t0_ms), min(b, t1_ms)
            if a < b:
                out.append((a, b))
        d += dt.timedelta(days=1)
    return out


# ----------------------------------------------------------------------------- evidence

RTT_AGGS = (
    Agg("n", "rtt_p50_ms"),
    Agg("rtt_ms", "rtt_p50_ms", rubric.QUALITY_PCT),
    Agg("jitter_ms", "jitter_rfc3550_ms", rubric.QUALITY_PCT),
    Agg("loss_pct", "loss_pct", rubric.QUALITY_PCT),
    Agg("burst_loss_pct", "burst_loss_200ms_pct", rubric.QUALITY_PCT),
    Agg("reorder_pct", "reorder_pct", rubric.QUALITY_PCT),
)
TP_AGGS = (
    Agg("n", "goodput_mbps"),
    Agg("p10", "goodput_mbps", rubric.SUSTAINED_PCT),
)
MEDIA_AGGS = (
    Agg("n", "voice_mos_g107"),
    Agg("mos_p10", "voice_mos_g107", rubric.SUSTAINED_PCT),
    Agg("loss_p95", "loss_pct", rubric.QUALITY_PCT),
)
CAP_AGGS = (Agg("n", "capacity_calls"), Agg("p10", "capacity_calls", rubric.SUSTAINED_PCT))
LATEST = (
    ("rtt", "rtt_p50_ms"),
    ("throughput", "goodput_mbps"),
    ("media", "voice_mos_g107"),
    ("media", "capacity_calls"),
)


@dataclass
class Figure:
    """A quality figure combined over sessions: median of the session values, the worst."""

    value: float | None = None
    worst: float | None = None
    sessions: int = 0


@dataclass
class Evidence:
    quality: dict[str, Figure] = field(default_factory=dict)
    windows: int = 0
    sessions_with_data: int = 0
    sessions_total: int = 0
    #: "all" when the site had no rtt window in clinic hours and was judged on all hours
    hours: str = "clinic"
    tp: dict[str, dict[str, float | None]] = field(default_factory=dict)  # direction -> p10, n
    media_mos: float | None = None
    media_n: int = 0
    capacity_calls: float | None = None
    capacity_n: int = 0
    failures: dict[str, dict[str, int]] = field(default_factory=dict)  # measurement -> result -> n
    newest_ms: int | None = None
    detected_tech: str | None = None
    #: the newest QoS check in the window (probes/qos, its direction=both record): whether a
    #: queue was built to judge by (``qos_tested``), the verdict and its reason; None: no check
    qos_tested: bool | None = None
    qos_effective: bool | None = None
    qos_reason: str | None = None

    @property
    def excluded(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for res in self.failures.values():
            for r, n in res.items():
                out[r] += n
        return dict(out)

    @property
    def any(self) -> bool:
        return bool(self.windows or self.tp or self.media_n or self.capacity_n or self.failures)


def combine(values: Sequence[float], lower_is_better: bool = True) -> Figure:
    """Median over sessions (a typical clinic day) and the worst session."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return Figure()
    worst = max(vals) if lower_is_better else min(vals)
    return Figure(stats.percentile(vals, 50), worst, len(vals))


def site_sessions(site: Site, profile: Profile, w: Window) -> list[tuple[int, int]]:
    if profile.hours == "all":
        return [(w.t0, w.t1)]
    return clinic_sessions(site.clinic_hours, w.t0, w.t1)


def _questions(
    store: Store, ods: list[str], sess: dict[str, list[tuple[int, int]]] | None, w: Window,
    whole_rtt: bool = False,
) -> dict[str, Callable[[], Any]]:  # fmt: skip
    """Every question the report asks the store, by name: a fixed number, whatever the
    estate size. ``rtt``: per clinic session (``sess``; None: not asked); ``rtt:all``
    (``whole_rtt``): over the whole window, for the round-the-clock profiles."""
    whole = {o: [(w.t0, w.t1)] for o in ods}
    jobs: dict[str, Callable[[], Any]] = {
        "tp": lambda: store.aggregate("throughput", TP_AGGS, whole, by="direction"),
        # quality of ordinary calls: not the capacity search, which pushes to failure on purpose
        "media": lambda: store.aggregate(
            "media", MEDIA_AGGS, whole, by="direction", exclude={"method": "find_capacity"}
        ),
        "cap": lambda: store.aggregate("media", CAP_AGGS, whole),
        "tech": lambda: store.detected_tech(ods, w.t0, w.t1),
        "qos": lambda: store.weekly_latest(
            "qos", QOS_FIELDS, ods, w.t0, w.t1, by="direction", match=QOS_MATCH
        ),
    }
    if sess is not None:
        jobs["rtt"] = lambda: store.aggregate("rtt", RTT_AGGS, sess)
    if whole_rtt:
        jobs["rtt:all"] = lambda: store.aggregate("rtt", RTT_AGGS, whole)
    for m in ("rtt", "throughput", "media"):
        jobs[f"fail:{m}"] = functools.partial(store.failures, m, ods, w.t0, w.t1)
    for i, (m, f) in enumerate(LATEST):
        jobs[f"latest:{i}"] = functools.partial(store.latest, m, f, ods, w.t0, w.t1)
    return jobs


def _ask(store: Store, jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """The answers; a store that can answer several at once (InfluxDB: ``concurrent = True``)
    gets them all in flight together, so the server's cores stay busy."""
    if not getattr(store, "concurrent", False):
        return {k: fn() for k, fn in jobs.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {k: pool.submit(fn) for k, fn in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def _rtt_rows(
    store: Store, got: dict[str, Any], ev: dict[str, Evidence], profile: Profile, w: Window
) -> AggRows:
    """The rtt aggregates per session. A site with no rtt window in clinic hours (a new agent
    installed in the evening, the demo at night) is judged on all hours, and says so
    (confidence low). The whole window's aggregates (``rtt:all``) are asked for only when
    they were not asked already."""
    rtt_rows = dict(got["rtt"] if profile.hours == "clinic" else got["rtt:all"])
    if profile.hours == "clinic":
        seen = {site for (site, _g, _sid), row in rtt_rows.items() if row.get("n")}
        missing = {o for o in ev if o not in seen}
        if missing:
            extra = got.get("rtt:all")
            if extra is None:
                extra = store.aggregate("rtt", RTT_AGGS, {o: [(w.t0, w.t1)] for o in missing})
            for key, row in extra.items():
                if key[0] in missing and row.get("n"):
                    rtt_rows[key] = row
                    ev[key[0]].hours = "all"
    for e in ev.values():
        if e.hours == "all":
            e.sessions_total = 1
    return rtt_rows


def _add_quality(ev: dict[str, Evidence], rtt_rows: AggRows) -> None:
    """Windows and sessions with data per site; each figure combined over its sessions."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (site, _g, _sid), row in rtt_rows.items():
        if site not in ev or not row.get("n"):
            continue
        e = ev[site]
        e.windows += int(row["n"] or 0)
        e.sessions_with_data += 1
        for k, v in row.items():
            if k != "n" and v is not None:
                per[site][k].append(float(v))
    for site, d in per.items():
        ev[site].quality = {k: combine(v) for k, v in d.items()}


def _add_capacity(ev: dict[str, Evidence], got: dict[str, Any]) -> None:
    """Throughput p10 per direction, media MOS (the worse direction), measured capacity."""
    for (site, g, _sid), row in got["tp"].items():
        if site in ev and g:
            ev[site].tp[g] = row
    media: dict[str, list[float]] = defaultdict(list)
    for (site, _g, _sid), row in got["media"].items():
        if site in ev and row.get("mos_p10") is not None:
            media[site].append(float(row["mos_p10"]))
            ev[site].media_n += int(row["n"] or 0)
    for site, v in media.items():
        ev[site].media_mos = min(v)  # the worse direction
    for (site, _g, _sid), row in got["cap"].items():
        if site in ev and row.get("p10") is not None:
            ev[site].capacity_calls = float(row["p10"])
            ev[site].capacity_n = int(row["n"] or 0)


def _add_status(ev: dict[str, Evidence], got: dict[str, Any]) -> None:
    """Failures by measurement and result, the newest valid measurement, the detected tech."""
    for m in ("rtt", "throughput", "media"):
        for site, res in got[f"fail:{m}"].items():
            if site in ev:
                ev[site].failures[m] = res
    for i in range(len(LATEST)):
        for site, t in got[f"latest:{i}"].items():
            if site in ev:
                ev[site].newest_ms = max(t, ev[site].newest_ms or 0)
    for site, tech in got["tech"].items():
        if site in ev:
            ev[site].detected_tech = tech


#: The QoS check's verdict record (probes/qos): the newest week's of each site.
QOS_FIELDS = ("qos_tested", "qos_effective", "qos_reason")
QOS_MATCH = {"direction": "both", "result": "ok"}


def _flag(v: Any) -> bool | None:
    """A stored boolean (InfluxDB: true/false; the SQLite store's JSON: 1/0)."""
    return None if v is None else bool(v)


def _add_qos(ev: dict[str, Evidence], got: dict[str, Any]) -> None:
    """Each site's newest QoS check in the window (``weekly_latest``: the newest week's)."""
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    for (site, week, _g), row in got["qos"].items():
        if site in ev and (site not in newest or week > newest[site][0]):
            newest[site] = (week, row)
    for site, (_w, row) in newest.items():
        e = ev[site]
        e.qos_tested = _flag(row.get("qos_tested"))
        e.qos_effective = _flag(row.get("qos_effective")) if e.qos_tested else None
        e.qos_reason = row.get("qos_reason")


def gather(store: Store, sites: Sequence[Site], profile: Profile, w: Window) -> dict[str, Evidence]:
    """All evidence for ``sites``: a fixed number of store queries, whatever the estate size."""
    return gather_profiles(store, sites, [profile], w)[profile.name]


def gather_profiles(
    store: Store, sites: Sequence[Site], profiles: Sequence[Profile], w: Window
) -> dict[str, dict[str, Evidence]]:
    """The evidence for several profiles (``--profile all``) from one set of store questions:
    the profiles differ only in hours (clinic sessions or the whole window), so the rtt
    aggregates are asked once per kind of hours and everything else once. Profile name ->
    site -> Evidence."""
    hours = {p.hours for p in profiles}
    clinic = {s.ods: clinic_sessions(s.clinic_hours, w.t0, w.t1) for s in sites}
    got = _ask(
        store,
        _questions(
            store,
            [s.ods for s in sites],
            clinic if "clinic" in hours else None,
            w,
            whole_rtt="all" in hours or len(profiles) > 1,
        ),
    )
    out: dict[str, dict[str, Evidence]] = {}
    for profile in profiles:
        ev = {s.ods: Evidence() for s in sites}
        for s in sites:
            ev[s.ods].sessions_total = len(clinic[s.ods]) if profile.hours == "clinic" else 1
        _add_quality(ev, _rtt_rows(store, got, ev, profile, w))
        _add_capacity(ev, got)
        _add_status(ev, got)
        _add_qos(ev, got)
        out[profile.name] = ev
    return out


# ----------------------------------------------------------------------------- verdicts


@dataclass
class Reason:
    metric: str
    band: str  # recommended | minimum | marginal | not_ready | no_data | info
    measured: float | None
    threshold: str
    source: str
    text: str
    short: str = ""  # a few words for narrow columns

    @property
    def verdict(self) -> str:
        return _BAND_VERDICT[self.band]


@dataclass
class Confidence:
    level: str  # high | medium | low | none
    windows: int
    sessions_with_data: int
    sessions: int
    throughput_samples: int
    media_samples: int
    excluded: dict[str, int]
    newest_ms: int | None


@dataclass
class SiteResult:
    ods: str
    name: str
    icb: str
    type: str
    declared_tech: str
    detected_tech: str | None
    tech_class: str
    tech_mismatch: bool
    wlr: bool
    registered_patients: int | None
    lat: float | None
    lon: float | None
    contracted_down_mbps: float
    contracted_up_mbps: float
    planned_clinics: int
    down_p10_mbps: float | None
    up_p10_mbps: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    burst_loss_pct: float | None
    reorder_pct: float | None
    mos: float | None
    media_mos: float | None
    capacity_calls: int | None
    capacity_source: str
    ct_minutes: float | None
    availability_pct: float | None
    verdict: str
    assessed: str  # the verdict the evidence gives, before STALE
    reasons: list[Reason]
    confidence: Confidence
    profile: str
    #: declared vs detected: match, mismatch, unverifiable (an Ethernet handoff), or None
    tech_check: str | None = None
    #: One plain answer for this profile's use (``rubric.GRADES``): Great / Good / Poor /
    #: Unusable, None without data; and the one measured reason behind it.
    grade: str | None = None
    grade_reason: str = ""
    #: "Does QoS protect the call?" (the newest QoS check, probes/qos): True / False, None
    #: when not tested (no queue built under load) or never checked; its reason with the
    #: figures ("" when never checked). Not a gate: it does not change the verdict.
    qos_effective: bool | None = None
    qos_reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


COPPER_DETECTED = frozenset({"adsl", "vdsl2", "gfast", "shdsl"})


def classify(tech: str | None) -> str:
    """copper / fibre / unknown for a declared or detected tech string."""
    t = normalise_tech(tech)
    if t in COPPER_TECHS or t in COPPER_DETECTED:
        return "copper"
    if t in FIBRE_TECHS:
        return "fibre"
    return "unknown"


def normalise_tech(tech: str | None) -> str | None:
    """Collector spellings (collectors/dsl.py: adsl, vdsl2, gfast, shdsl, ethernet, unknown;
    also adsl2+, gpon, eth0) -> one vocabulary; ``None`` for nothing conclusive."""
    if not tech:
        return None
    t = tech.strip().lower()
    if t in ("unknown", ""):
        return None
    if t.startswith("adsl"):
        return "adsl"
    if t.startswith("vdsl"):
        return "vdsl2"
    if t in ("g.fast", "gfast"):
        return "gfast"
    if t in ("gpon", "xgs-pon", "xgspon", "pon", "ftth"):
        return "fttp"
    if t.startswith("eth"):
        return "ethernet"
    return t


#: declared tech -> detected techs that agree with it (as collectors/dsl.py ``tech_check``)
EXPECTED_DETECTED = {
    "adsl": {"adsl"},
    "fttc": {"vdsl2", "gfast", "fttc", "sogea"},
    "sogea": {"vdsl2", "gfast", "fttc", "sogea"},
    "fttp": {"fttp"},
    "ethernet": {"ethernet", "fttp"},
}
#: Declared techs an Ethernet handoff neither confirms nor contradicts: an FTTP ONT, or a
#: DSL modem, in front of the router hands it exactly that.
UNVERIFIABLE_BY_ETHERNET = frozenset({"adsl", "fttc", "sogea", "fttp"})


def tech_check(declared: str, detected: str | None) -> str | None:
    """``match``, ``mismatch`` (fibre vs DSL, ADSL vs VDSL, SHDSL/EFM sold as "Ethernet", cable
    or cellular anywhere) or ``unverifiable`` (an Ethernet handoff where fibre or DSL is
    declared); ``None`` when the router said nothing conclusive."""
    d = normalise_tech(detected)
    if d is None or declared not in EXPECTED_DETECTED:
        return None
    if d in EXPECTED_DETECTED[declared]:
        return "match"
    if d == "ethernet" and declared in UNVERIFIABLE_BY_ETHERNET:
        return "unverifiable"
    return "mismatch"


def tech_mismatch(declared: str, detected: str | None) -> bool:
    """The router contradicts the declared tech (``tech_check`` is ``mismatch``)."""
    return tech_check(declared, detected) == "mismatch"


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    s = f"{v:.3g}" if abs(v) < 10 else f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return f"{s} {unit}".strip()


def judge(t: Threshold, value: float | None, what: str = "", *, missing: str = "") -> Reason:
    """One gate: measured value vs the threshold, with the source."""
    if value is None:
        return Reason(
            t.metric,
            "no_data",
            None,
            t.describe(),
            t.source,
            f"{t.label}: not measured{' — ' + missing if missing else ''}",
        )
    band = t.band(value)
    op_ok = ("≤" if t.inclusive else "<") if t.better == "lower" else "≥"
    op_bad = ">" if t.better == "lower" else "<"
    u = f" {t.unit}" if t.unit else ""
    if band == "not_ready":
        cmp = f"past the not-ready bound ({op_bad} {t.not_ready:g}{u})"
    elif band == "recommended":
        cmp = f"meets recommended {op_ok} {t.recommended:g}{u}"
    elif band == "minimum":
        cmp = f"meets minimum {op_ok} {t.minimum:g}{u} (recommended {op_ok} {t.recommended:g}{u})"
    else:
        cmp = f"misses minimum {op_ok} {t.minimum:g}{u}"
    how = f" ({what})" if what else (f" ({t.how})" if t.how else "")
    short = {
        "not_ready": f"{op_bad} {t.not_ready or 0:g}",
        "marginal": f"misses {op_ok} {t.minimum:g}",
    }
    return Reason(
        t.metric,
        band,
        value,
        t.describe(),
        t.source,
        f"{t.label} {_fmt(value, t.unit)}{how}: {cmp}",
        f"{t.label} {_fmt(value, t.unit)} {short.get(band, 'ok')}",
    )


def _tp(ev: Evidence, direction: str, key: str) -> float | None:
    v = ev.tp.get(direction, {}).get(key)
    return None if v is None else float(v)


@dataclass
class Figures:
    """The numbers a site is judged on, from its evidence (None: not measured)."""

    #: gate metric -> value (``mos``: the E-model's, else the media probe's; absent if neither)
    values: dict[str, float | None]
    #: the E-model MOS from the rtt figures (None without all three)
    emodel_mos: float | None
    up10: float | None
    down10: float | None
    #: rtt runs that failed, by result, and how many of them mean "unavailable"
    rtt_fail: dict[str, int]
    unavailable: int


def _figures(ev: Evidence, profile: Profile) -> Figures:
    """Quality figures (only with enough windows), throughput p10, availability, CT minutes."""
    q = ev.quality
    have_quality = ev.windows >= rubric.MIN_WINDOWS

    def fig(k: str) -> float | None:
        return q[k].value if (have_quality and k in q) else None

    rtt, jit, loss = fig("rtt_ms"), fig("jitter_ms"), fig("loss_pct")
    mos = None
    if rtt is not None and jit is not None and loss is not None:
        mos = stats.emodel_mos(rtt / 2.0, jit, loss)  # one-way latency = RTT / 2
    up10, down10 = _tp(ev, "up", "p10"), _tp(ev, "down", "p10")
    rtt_fail = ev.failures.get("rtt", {})
    unavailable = sum(n for r, n in rtt_fail.items() if r in rubric.UNAVAILABLE_RESULTS)
    runs = ev.windows + unavailable
    values = {
        "rtt_ms": rtt,
        "jitter_ms": jit,
        "loss_pct": loss,
        "burst_loss_pct": fig("burst_loss_pct"),
        "reorder_pct": fig("reorder_pct"),
        "availability_pct": 100.0 * ev.windows / runs if runs else None,
        "ct_minutes": rubric.CT_STUDY_GB * 8000.0 / up10 / 60.0 if up10 else None,
    }
    if mos is not None:
        values["mos"] = mos
    elif ev.media_mos is not None:
        values["mos"] = ev.media_mos
    return Figures(values, mos, up10, down10, rtt_fail, unavailable)


def _coverage_reasons(ev: Evidence, profile: Profile, f: Figures) -> list[Reason]:
    """What the evidence covers: judged on all hours for want of clinic hours; every rtt run
    failed."""
    reasons = []
    if profile.hours == "clinic" and ev.hours == "all":
        reasons.append(
            Reason(
                "hours",
                "info",
                None,
                "clinic hours",
                "inventory clinic_hours",
                "no rtt window in clinic hours in the window: quality judged on all hours "
                "(night-time figures may flatter the line; confidence low)",
                "judged on all hours",
            )
        )
    if ev.windows == 0 and f.unavailable:
        detail = ", ".join(f"{r} {n}" for r, n in sorted(f.rtt_fail.items()))
        reasons.append(
            Reason(
                "rtt_runs",
                "not_ready",
                0.0,
                "runs answered > 0",
                "netready: a target that never answers cannot carry a call",
                f"every rtt run in the window failed ({detail})",
                "all rtt runs failed",
            )
        )
    return reasons


def _gate_how(g: str, t: Threshold, ev: Evidence, profile: Profile, f: Figures) -> str:
    """How a measured gate value was arrived at, for its reason."""
    q = ev.quality
    if g == "mos":
        if f.emodel_mos is not None:
            return "E-model, one-way latency = RTT/2"
        return f"media probe, p10 of {ev.media_n} runs"
    if g in q and profile.hours == "clinic" and ev.hours == "all":
        return f"{t.how}, all hours: none in clinic hours"
    if g in q and profile.hours == "clinic":
        return (
            f"{t.how}, median of {q[g].sessions} clinic days; worst day {_fmt(q[g].worst, t.unit)}"
        )
    if g == "ct_minutes":
        return f"{rubric.CT_STUDY_GB:g} GB at p10 upload {_fmt(f.up10, 'Mbps')}"
    return ""


def _gate_reasons(ev: Evidence, profile: Profile, f: Figures) -> list[Reason]:
    """One reason per gate of the profile: the value against its threshold, or why none."""
    hours = "clinic hours" if profile.hours == "clinic" else "all hours"
    no_quality = f"{ev.windows} valid 15 s windows in {hours} (need {rubric.MIN_WINDOWS})"
    reasons = []
    for g in profile.gates:
        t = profile.threshold(g)
        v = f.values.get(g)
        missing = no_quality
        if g == "ct_minutes":
            missing = "no upload throughput in the window"
        if g == "availability_pct" and v is None:
            missing = "no rtt runs in the window"
        what = _gate_how(g, t, ev, profile, f) if v is not None else ""
        reasons.append(judge(t, v, what, missing=missing))
    return reasons


def computed_capacity(profile: Profile, up10: float, down10: float) -> tuple[int, int]:
    """Calls the sustained rates carry, (up, down): ``floor(0.75 × p10 ÷ recommended
    per-call rate)``. The capacity is the smaller."""
    cu = math.floor(HEADROOM * up10 / profile.up.recommended + 1e-9)
    cd = math.floor(HEADROOM * down10 / profile.down.recommended + 1e-9)
    return cu, cd


def _capacity(ev: Evidence, profile: Profile, f: Figures) -> tuple[int | None, str]:
    """Concurrent calls the link carries, and where that figure comes from: measured by the
    media probe, else computed from throughput p10 at the recommended per-call rates."""
    if not profile.concurrent:
        return None, "none: no throughput or media capacity in the window"
    if ev.capacity_calls is not None:
        return int(ev.capacity_calls), (
            f"measured: media probe capacity_calls, p10 of {ev.capacity_n} runs"
        )
    up10, down10 = f.up10, f.down10
    if up10 is None or down10 is None:
        return None, "none: no throughput or media capacity in the window"
    cu, cd = computed_capacity(profile, up10, down10)
    return min(cu, cd), (
        f"computed: floor({HEADROOM:g} × p10 ÷ {profile.up.recommended:g} Mbps up, "
        f"÷ {profile.down.recommended:g} Mbps down), the smaller "
        f"(up {_fmt(up10, 'Mbps')} -> {cu}, down {_fmt(down10, 'Mbps')} -> {cd})"
    )


def _short_of_planned(cap: int, planned: int, cap_src: str, profile: Profile, f: Figures) -> Reason:
    """Capacity below the planned clinics: marginal, or not ready when nothing fits or each
    planned call's share of the sustained rate is past a per-call gate's not-ready bound."""
    band = "not_ready" if cap == 0 else "marginal"
    per_call = []
    if f.up10 is not None and f.down10 is not None:
        # Each planned call's share of the sustained rate, judged on the per-call gates.
        bands = []
        for t, v10, d in ((profile.up, f.up10, "up"), (profile.down, f.down10, "down")):
            share = HEADROOM * v10 / planned
            bands.append(t.band(share))
            per_call.append(
                f"{d} {_fmt(share, 'Mbps')}/call "
                f"({t.label} not ready < {t.not_ready:g}, "
                f"minimum {t.minimum:g})"
            )
        band = "not_ready" if "not_ready" in bands else "marginal"
    extra = ("; " + "; ".join(per_call)) if per_call else ""
    return Reason(
        "capacity_calls",
        band,
        float(cap),
        f"≥ {planned} planned",
        f"{rubric.HEADROOM_SOURCE}; {profile.up.source}",
        f"capacity {cap} calls < {planned} planned ({cap_src}){extra}",
        f"capacity {cap}/{planned} calls",
    )


def _capacity_reason(
    planned: int, cap: int | None, cap_src: str, profile: Profile, f: Figures
) -> Reason:
    """Capacity against the planned concurrent clinics."""
    if planned == 0:
        return Reason(
            "capacity_calls",
            "info",
            cap,
            "planned clinics 0",
            "inventory",
            "no concurrent clinics planned",
        )
    if cap is None:
        return Reason(
            "capacity_calls",
            "no_data",
            None,
            f"≥ {planned} planned",
            rubric.HEADROOM_SOURCE,
            f"capacity unknown ({cap_src})",
            "capacity unknown",
        )
    if cap >= planned:
        return Reason(
            "capacity_calls",
            "recommended",
            float(cap),
            f"≥ {planned} planned",
            rubric.HEADROOM_SOURCE,
            f"capacity {cap} calls ≥ {planned} planned ({cap_src})",
            f"capacity {cap}/{planned} calls",
        )
    return _short_of_planned(cap, planned, cap_src, profile, f)


def _decide(reasons: list[Reason], ev: Evidence, now_ms: int) -> tuple[str, str]:
    """(the verdict the evidence gives, the verdict: STALE when the evidence is old). Updates
    ``reasons``: nothing but "no data" without evidence; the age first when STALE."""
    judged = [r for r in reasons if r.band not in ("no_data", "info")]
    if not ev.any or not judged:
        assessed = NO_DATA
        if not ev.any:
            reasons[:] = [
                Reason("data", "no_data", None, "", "", "no measurements in the window", "no data")
            ]
    else:
        assessed = max((r.verdict for r in reasons), key=lambda v: _SEV[v])
    if assessed == NO_DATA or ev.newest_ms is None:
        return assessed, assessed
    age = dt.timedelta(milliseconds=now_ms - ev.newest_ms)
    if age <= rubric.STALE_AFTER:
        return assessed, assessed
    days = age.total_seconds() / 86400
    reasons.insert(
        0,
        Reason(
            "newest",
            "info",
            days,
            f"≤ {rubric.STALE_AFTER.days} days",
            "netready: evidence older than the stale limit says little about today",
            f"newest valid measurement is {days:.1f} days old "
            f"(> {rubric.STALE_AFTER.days} days); the evidence says {assessed}",
            f"stale: {days:.1f} days old",
        ),
    )
    return assessed, STALE


def _confidence(ev: Evidence, profile: Profile) -> Confidence:
    """high / medium / low / none, from clinic days covered, windows and capacity samples."""
    tp_n = int(sum((d.get("n") or 0) for d in ev.tp.values()))
    level = "none"
    if ev.any:
        enough_days = ev.sessions_with_data >= min(5, max(1, ev.sessions_total))
        capacity_ok = tp_n >= 4 or ev.capacity_n >= 3 or not profile.concurrent
        if ev.hours == "all" and profile.hours == "clinic":
            level = "low"
        elif enough_days and ev.windows >= 50 and capacity_ok:
            level = "high"
        elif ev.sessions_with_data >= 2 and ev.windows >= 12:
            level = "medium"
        else:
            level = "low"
    return Confidence(
        level,
        ev.windows,
        ev.sessions_with_data,
        ev.sessions_total,
        tp_n,
        ev.media_n,
        ev.excluded,
        ev.newest_ms,
    )


def evaluate(site: Site, ev: Evidence, profile: Profile, now_ms: int) -> SiteResult:
    """Verdict, reasons and confidence for one site from its evidence (pure, no I/O)."""
    f = _figures(ev, profile)
    reasons = _coverage_reasons(ev, profile, f) + _gate_reasons(ev, profile, f)
    cap, cap_src = _capacity(ev, profile, f)
    if profile.concurrent:
        reasons.append(_capacity_reason(site.planned_clinics, cap, cap_src, profile, f))
    assessed, final = _decide(reasons, ev, now_ms)
    grade, grade_reason = rubric.grade([(r.band, r.text) for r in reasons])
    detected = normalise_tech(ev.detected_tech)
    v = f.values
    return SiteResult(
        ods=site.ods,
        name=site.name,
        icb=site.icb,
        type=site.type,
        declared_tech=site.link.tech,
        detected_tech=detected,
        tech_class=classify(site.link.tech),
        tech_mismatch=tech_mismatch(site.link.tech, detected),
        tech_check=tech_check(site.link.tech, detected),
        wlr=site.link.wlr,
        registered_patients=site.registered_patients,
        lat=site.lat,
        lon=site.lon,
        contracted_down_mbps=site.link.down_mbps,
        contracted_up_mbps=site.link.up_mbps,
        planned_clinics=site.planned_clinics,
        down_p10_mbps=f.down10,
        up_p10_mbps=f.up10,
        rtt_ms=v["rtt_ms"],
        jitter_ms=v["jitter_ms"],
        loss_pct=v["loss_pct"],
        burst_loss_pct=v["burst_loss_pct"],
        reorder_pct=v["reorder_pct"],
        mos=f.emodel_mos,
        media_mos=ev.media_mos,
        capacity_calls=cap,
        capacity_source=cap_src if profile.concurrent else "not applicable",
        ct_minutes=v["ct_minutes"],
        availability_pct=v["availability_pct"],
        verdict=final,
        assessed=assessed,
        reasons=reasons,
        confidence=_confidence(ev, profile),
        profile=profile.name,
        grade=grade,
        grade_reason=grade_reason,
        qos_effective=ev.qos_effective,
        qos_reason=ev.qos_reason or "",
    )


NO_QOS_CHECK = rubric.NO_QOS_CHECK


def qos_word(r: SiteResult) -> str:
    """"Protected" / "Not protected" / "Not tested" (no queue built), or "No check"."""
    return rubric.QOS_WORDS[r.qos_effective] if r.qos_reason else NO_QOS_CHECK


# ----------------------------------------------------------------------------- the estate


@dataclass
class Estate:
    profile: str
    now_ms: int
    since_s: float
    store: str
    sites: list[SiteResult]
    cohorts: list[dict[str, Any]]
    by_icb: list[dict[str, Any]]
    priority: list[dict[str, Any]]
    pstn_risk: list[dict[str, Any]]
    mismatches: list[dict[str, Any]]
    #: sites whose router sees an Ethernet handoff where fibre or DSL is declared: neither a
    #: match nor a mismatch (the router cannot see what is in front of it)
    unverifiable: list[dict[str, Any]] = field(default_factory=list)
    #: each site's day-by-day history for the HTML/PDF site sections (``reports/trends.py``)
    trends: Any = None
    #: the weekly verdict history and what changed (``reports/history.History``), when asked
    history: Any = None
    #: ``--profile all``: every profile's results (profile name -> one per site, in the
    #: order of ``sites``); ``sites`` and the rest are the default profile's. None: one profile.
    by_profile: dict[str, list[SiteResult]] | None = None

    def counts(self) -> dict[str, int]:
        c = {v: 0 for v in VERDICTS}
        for s in self.sites:
            c[s.verdict] += 1
        return c

    def grades(self) -> dict[str, dict[str, dict[str, str | None]]]:
        """``--profile all``: site -> profile -> {grade, reason, verdict} (empty otherwise)."""
        out: dict[str, dict[str, dict[str, str | None]]] = {}
        for name, results in (self.by_profile or {}).items():
            for r in results:
                out.setdefault(r.ods, {})[name] = {
                    "grade": r.grade,
                    "reason": r.grade_reason,
                    "verdict": r.verdict,
                }
        return out


def select_sites(inv: Inventory, site: Sequence[str] = (), icb: Sequence[str] = ()) -> list[Site]:
    out = list(inv.sites)
    if site:
        for s in site:
            inv.site(s)  # raises InventoryError naming the unknown code
        out = [s for s in out if s.ods in set(site)]
    if icb:
        out = [s for s in out if s.icb in set(icb)]
    return out


def assess_estate(
    store: Store, sites: Sequence[Site], profile_name: str, w: Window, store_name: str = ""
) -> Estate:
    profile = PROFILES[profile_name]
    ev = gather(store, sites, profile, w)
    results = [evaluate(s, ev[s.ods], profile, w.now_ms) for s in sites]
    return _estate(profile, results, sites, w, store_name)


def assess_profiles(store: Store, sites: Sequence[Site], w: Window, store_name: str = "") -> Estate:
    """``--profile all``: every site judged for every profile from one reading of the store
    (``gather_profiles``). The estate is the default profile's, with ``by_profile`` set."""
    ev = gather_profiles(store, sites, list(PROFILES.values()), w)
    by_profile = {
        name: [evaluate(s, ev[name][s.ods], PROFILES[name], w.now_ms) for s in sites]
        for name in PROFILES
    }
    main = PROFILES[rubric.DEFAULT_PROFILE]
    estate = _estate(main, by_profile[main.name], sites, w, store_name)
    estate.by_profile = by_profile
    return estate


def _estate(
    profile: Profile, results: list[SiteResult], sites: Sequence[Site], w: Window, store_name: str
) -> Estate:
    return Estate(
        profile=profile.name,
        now_ms=w.now_ms,
        since_s=w.since.total_seconds(),
        store=store_name,
        sites=results,
        cohorts=cohorts(results, "declared_tech") + cohorts(results, "detected_tech"),
        by_icb=cohorts(results, "icb"),
        priority=upgrade_priority(results),
        pstn_risk=pstn_risk(results, w.now_ms),
        mismatches=tech_list(results, sites, "mismatch"),
        unverifiable=tech_list(results, sites, "unverifiable"),
    )


def tech_list(results: Sequence[SiteResult], sites: Sequence[Site], check: str
              ) -> list[dict[str, Any]]:  # fmt: skip
    """The sites whose declared-vs-detected ``tech_check`` is ``check`` (mismatch or
    unverifiable), with the router's vendor."""
    by_ods = {s.ods: s for s in sites}
    return [
        {
            "ods": r.ods,
            "name": r.name,
            "declared_tech": r.declared_tech,
            "detected_tech": r.detected_tech,
            "router": _vendor(by_ods[r.ods]),
        }
        for r in results
        if r.tech_check == check
    ]


def _vendor(site: Site) -> str | None:
    return site.router.vendor if site.router else None


def _dist(vals: Iterable[float | None]) -> dict[str, float | None]:
    v = [float(x) for x in vals if x is not None]
    return {"median": stats.percentile(v, 50), "p10": stats.percentile(v, 10), "n": len(v)}


def cohorts(results: Sequence[SiteResult], key: str) -> list[dict[str, Any]]:
    """Per value of ``key`` (declared_tech, detected_tech, icb): counts, share ready and the
    distribution across its sites of their figures (median and p10 of the site values)."""
    groups: dict[tuple[str, str], list[SiteResult]] = defaultdict(list)
    for r in results:
        v = getattr(r, key) or "unknown"
        cls = classify(r.declared_tech if key != "detected_tech" else r.detected_tech)
        groups[(str(v), cls if key == "icb" else "")].append(r)
    out = []
    for (v, cls), rs in sorted(groups.items()):
        ready = sum(r.verdict == READY for r in rs)
        judged = sum(r.verdict not in (NO_DATA,) for r in rs)
        row: dict[str, Any] = {
            "by": key,
            "group": v,
            "class": cls or classify(v),
            "sites": len(rs),
            "ready": ready,
            "marginal": sum(r.verdict == MARGINAL for r in rs),
            "not_ready": sum(r.verdict == NOT_READY for r in rs),
            "no_data": sum(r.verdict == NO_DATA for r in rs),
            "stale": sum(r.verdict == STALE for r in rs),
            "share_ready": ready / len(rs),
            "judged": judged,
        }
        for f in ("down_p10_mbps", "up_p10_mbps", "rtt_ms", "jitter_ms", "mos"):
            row[f] = _dist(getattr(r, f) for r in rs)
        out.append(row)
    return out


def shortfall(r: SiteResult) -> float:
    """Share of the planned clinics the link cannot carry well (0..1).

    Capacity short: (planned - capacity) / planned (unknown capacity counts as 1). A quality gate
    past its not-ready bound makes every clinic suffer (1.0); a marginal gate at least 0.5.
    """
    planned = max(1, r.planned_clinics)
    cap = r.capacity_calls
    s = 1.0 if cap is None else max(0.0, (planned - min(cap, planned)) / planned)
    quality = [x for x in r.reasons if x.metric in rubric.QUALITY or x.metric == "rtt_runs"]
    if any(x.band == "not_ready" for x in quality):
        s = 1.0
    elif any(x.band == "marginal" for x in quality):
        s = max(s, 0.5)
    return s


def upgrade_priority(results: Sequence[SiteResult]) -> list[dict[str, Any]]:
    """Copper sites not ready, by planned clinics × shortfall, then registered patients."""
    rows: list[dict[str, Any]] = []
    for r in results:
        copper = r.tech_class == "copper" or classify(r.detected_tech) == "copper"
        verdict = r.assessed if r.verdict == STALE else r.verdict
        if not copper or verdict not in (NOT_READY, MARGINAL):
            continue
        sf = shortfall(r)
        rows.append(
            {
                "ods": r.ods,
                "name": r.name,
                "icb": r.icb,
                "declared_tech": r.declared_tech,
                "detected_tech": r.detected_tech,
                "verdict": r.verdict,
                "planned_clinics": r.planned_clinics,
                "capacity_calls": r.capacity_calls,
                "shortfall": round(sf, 4),
                "score": round(r.planned_clinics * sf, 4),
                "registered_patients": r.registered_patients,
                "why": "; ".join(
                    x.short or x.text for x in r.reasons if x.band in ("not_ready", "marginal")
                ),
            }
        )
    rows.sort(key=lambda d: (-d["score"], -(d["registered_patients"] or 0), d["ods"]))
    for i, d in enumerate(rows, 1):
        d["rank"] = i
    return rows


def pstn_risk(results: Sequence[SiteResult], now_ms: int) -> list[dict[str, Any]]:
    """ADSL or WLR lines (declared, or ADSL detected) that stop working at the PSTN switch-off."""
    today = dt.datetime.fromtimestamp(now_ms / 1000, TZ).date()
    days = (rubric.PSTN_SWITCH_OFF - today).days
    out: list[dict[str, Any]] = []
    for r in results:
        why = []
        if r.declared_tech in rubric.PSTN_TECHS:
            why.append(f"declared {r.declared_tech}")
        if r.detected_tech in rubric.PSTN_TECHS:
            why.append(f"router reports {r.detected_tech}")
        if r.wlr:
            why.append("line on WLR")
        if why:
            out.append(
                {
                    "ods": r.ods,
                    "name": r.name,
                    "icb": r.icb,
                    "declared_tech": r.declared_tech,
                    "detected_tech": r.detected_tech,
                    "wlr": r.wlr,
                    "why": ", ".join(why),
                    "days_to_switch_off": days,
                    "registered_patients": r.registered_patients,
                    "verdict": r.verdict,
                }
            )
    out.sort(key=lambda d: (-(d["registered_patients"] or 0), d["ods"]))
    return out
