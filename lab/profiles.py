"""Link profiles: what an emulated access line does (rates per direction, CPE buffer depth,
random loss, delay and jitter), the built-in ones, and the ``key=value`` text form
(``parse_profile`` / ``profile_to_text``) that the CLI, the demo and the benchmarks use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from netready.errors import ConfigError

TECHS = ("adsl", "fttc", "sogea", "fttp", "ethernet", "unknown")
#: The router's queue discipline per direction (``Profile.qos``).
QOS_MODES = ("none", "dscp")


@dataclass(frozen=True)
class Profile:
    """One access line. Rates in Mbit/s at the IP layer (what tc shapes), per direction.

    ``queue_ms`` sizes the bottleneck buffer: bytes = rate x queue_ms, so a full buffer adds
    about ``queue_ms`` of delay (bufferbloat). Loss is random, per packet, per direction.
    ``delay_ms`` / ``jitter_ms`` are one-way, added in each direction by the delay line.
    """

    name: str
    tech: str
    down_mbit: float
    up_mbit: float
    queue_ms: float = 50.0
    loss_pct_down: float = 0.0
    loss_pct_up: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    keep_order: bool = False  # jitter without reordering (queueing-like); see docs/lab.md
    #: the router's queue per direction: ``none`` one byte FIFO for everything (a CPE without
    #: QoS); ``dscp`` strict priority by DSCP, EF then AF41 then the rest (lab/shaping.py)
    qos: str = "none"

    def __post_init__(self) -> None:
        if self.tech not in TECHS:
            raise ConfigError(
                f"profile {self.name}: tech {self.tech!r} is not one of {', '.join(TECHS)}"
            )
        for f in ("down_mbit", "up_mbit"):
            v = getattr(self, f)
            if not (0.01 <= v <= 10_000):
                raise ConfigError(f"profile {self.name}: {f}={v} must be between 0.01 and 10000")
        if not (1 <= self.queue_ms <= 5_000):
            raise ConfigError(f"profile {self.name}: queue_ms={self.queue_ms} must be 1..5000")
        for f in ("loss_pct_down", "loss_pct_up"):
            v = getattr(self, f)
            if not (0 <= v <= 100):
                raise ConfigError(f"profile {self.name}: {f}={v} must be 0..100")
        if not (0 <= self.delay_ms <= 10_000) or not (0 <= self.jitter_ms <= 10_000):
            raise ConfigError(f"profile {self.name}: delay_ms/jitter_ms must be 0..10000")
        if self.qos not in QOS_MODES:
            raise ConfigError(
                f"profile {self.name}: qos={self.qos!r} is not one of {', '.join(QOS_MODES)}"
            )

    @property
    def needs_delay_line(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        # ADSL2+ on a long-ish line; ADSL routers carry deep buffers (bufferbloat).
        Profile("adsl", "adsl", 7.0, 0.8, queue_ms=250),
        Profile("fttc40", "fttc", 36.0, 9.0, queue_ms=120),
        Profile("fttc80", "fttc", 70.0, 18.0, queue_ms=120),
        Profile("sogea80", "sogea", 70.0, 18.0, queue_ms=120),
        Profile("fttp", "fttp", 150.0, 30.0, queue_ms=30),
        Profile("ethernet", "ethernet", 100.0, 100.0, queue_ms=20),
    )
}

#: CPE buffer depth by access technology, for profiles made from an inventory's link.
QUEUE_MS_BY_TECH = {
    "adsl": 250.0,
    "fttc": 120.0,
    "sogea": 120.0,
    "fttp": 30.0,
    "ethernet": 20.0,
    "unknown": 50.0,
}


def profile_for_link(
    tech: str, down_mbit: float, up_mbit: float, name: str | None = None
) -> Profile:
    """A profile for an inventory link (``site.link``): its contracted rates, shaped as they
    are, and the CPE buffer typical of its technology."""
    return Profile(
        name or f"{tech}-{down_mbit:g}/{up_mbit:g}",
        tech,
        float(down_mbit),
        float(up_mbit),
        queue_ms=QUEUE_MS_BY_TECH.get(tech, 50.0),
    )


_KEYS = {
    "down": "down_mbit",
    "down_mbit": "down_mbit",
    "up": "up_mbit",
    "up_mbit": "up_mbit",
    "queue_ms": "queue_ms",
    "queue": "queue_ms",
    "loss": "loss",
    "loss_pct": "loss",
    "loss_down": "loss_pct_down",
    "loss_pct_down": "loss_pct_down",
    "loss_up": "loss_pct_up",
    "loss_pct_up": "loss_pct_up",
    "delay_ms": "delay_ms",
    "delay": "delay_ms",
    "jitter_ms": "jitter_ms",
    "jitter": "jitter_ms",
    "keep_order": "keep_order",
    "tech": "tech",
    "qos": "qos",
    "name": "name",
    "base": "base",
}


def parse_profile(text: str) -> Profile:
    """A profile by name (``adsl``) or custom ``key=value`` pairs separated by commas.

    Keys: down, up (Mbit/s), queue_ms, loss (both directions), loss_down, loss_up (percent),
    delay_ms, jitter_ms (one-way), keep_order, qos (``none`` or ``dscp``: a DSCP-aware queue),
    tech, name, base (start from a named profile).
    Example: ``down=20,up=5,queue_ms=200,loss_up=1`` or ``base=fttc40,loss=2,qos=dscp``.
    """
    text = text.strip()
    if not text:
        raise ConfigError("empty link profile")
    if "=" not in text:
        if text in PROFILES:
            return PROFILES[text]
        raise ConfigError(f"unknown link profile {text!r}; known: {', '.join(PROFILES)}")
    values: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _KEYS:
            raise ConfigError(
                f"link profile {text!r}: bad item {part!r} (keys: {', '.join(sorted(_KEYS))})"
            )
        k = _KEYS[key]
        val = val.strip()
        if k in ("tech", "name", "base", "qos"):
            values[k] = val
            continue
        if k == "keep_order":
            if val.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"link profile {text!r}: keep_order={val!r} is not 1/0")
            values[k] = val.lower() in ("1", "true", "yes")
            continue
        try:
            num = float(val)
        except ValueError:
            raise ConfigError(f"link profile {text!r}: {key}={val!r} is not a number") from None
        if k == "loss":
            values["loss_pct_down"] = values["loss_pct_up"] = num
        else:
            values[k] = num
    base_name = values.pop("base", None)
    if base_name is not None:
        if base_name not in PROFILES:
            raise ConfigError(f"link profile {text!r}: unknown base {base_name!r}")
        base = PROFILES[base_name]
        values.setdefault("name", f"{base.name}+custom")
        return replace(base, **values)
    for req in ("down_mbit", "up_mbit"):
        if req not in values:
            raise ConfigError(f"link profile {text!r}: needs down= and up= (Mbit/s) or base=NAME")
    values.setdefault("name", "custom")
    values.setdefault("tech", "unknown")
    return Profile(**values)


def profile_to_text(p: Profile) -> str:
    """The inverse of ``parse_profile`` for any profile (round-trips exactly)."""
    return (
        f"name={p.name},tech={p.tech},down={p.down_mbit!r},up={p.up_mbit!r},"
        f"queue_ms={p.queue_ms!r},loss_down={p.loss_pct_down!r},loss_up={p.loss_pct_up!r},"
        f"delay_ms={p.delay_ms!r},jitter_ms={p.jitter_ms!r},keep_order={int(p.keep_order)},"
        f"qos={p.qos}"
    )
