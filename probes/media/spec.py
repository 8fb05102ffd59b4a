"""The media probe's options (``Spec``) and what a run costs in bytes (the budget's
business: ``cost`` before it starts, ``cap_bytes`` for a capacity search)."""

from __future__ import annotations

from netready.probes.media.wire import (
    AUDIO_INTERVAL_NS,
    FPS,
    MEDIA_PROFILES,
    MediaProfile,
    ProfileName,
    frame_packets,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import budget
from netready.inventory import Secret, split_hostport
from netready.plugin import Context


class Spec(BaseModel):
    """What to measure: an emulated video consultation against a media responder."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="HOST:PORT of a netready media responder")
    profile: ProfileName = Field(
        "hd", description="video profile: sd 360p 0.5, hd 720p 1.5, fhd 1080p 2.5 Mbit/s"
    )
    duration_s: float = Field(
        15.0,
        gt=0,
        le=300,
        description="seconds per call (quality windows are 15 s)",
        json_schema_extra={"cli": "--duration"},
    )
    calls: int = Field(1, ge=1, le=200, description="concurrent calls")
    secret: Secret | None = Field(
        None, description="shared secret the responder requires: env:NAME or file:PATH"
    )
    dscp_audio: int = Field(46, ge=0, le=63, description="DSCP of the audio packets")
    dscp_video: int = Field(34, ge=0, le=63, description="DSCP of the video packets")
    keyframes: bool = Field(True, description="every 60th video frame a key frame 3x the size")
    timeout_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="seconds to wait for the responder's control answers",
        json_schema_extra={"cli": "--timeout"},
    )
    find_capacity: bool = Field(
        False, description="search for the most concurrent calls that meet the minimum gates"
    )
    max_calls: int = Field(32, ge=1, le=200, description="upper bound of the capacity search")
    step_duration_s: float | None = Field(
        None,
        gt=0,
        le=300,
        description="seconds per capacity-search step (default: duration_s)",
        json_schema_extra={"cli": "--step-duration"},
    )
    budget_s: float = Field(
        180.0, gt=0, le=3600, description="time budget of a capacity search, seconds"
    )
    max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="byte cap of one run (IP bytes, both directions), MB; default: the "
        "site's budget.test_mb (100)",
        json_schema_extra={"cli": "--budget-mb"},
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v)  # raises ValueError with a clear message
        return v

    def resolved_secret(self) -> str | None:
        return self.secret.resolve() if self.secret else None


IP_UDP_OVERHEAD = 28  # bytes of IPv4 + UDP header per packet, counted against budgets


def call_bytes(profile: MediaProfile, duration_s: float) -> float:
    """IP bytes one call moves (both directions) in ``duration_s``."""
    per_2s = sum(len(frame_packets(k, profile.video_kbps)) for k in range(2 * FPS))
    pps = 1e9 / AUDIO_INTERVAL_NS + per_2s / 2
    return 2 * (profile.kbps * 1000 / 8 + pps * IP_UDP_OVERHEAD) * duration_s


def cap_bytes(ctx: Context, spec: Spec) -> int:
    """Most bytes this run may move: the spec's ``max_mb``, the site's per-test budget and
    what is left of its day (``netready.budget``); 100 MB by default."""
    return budget.test_cap_bytes(ctx, spec.max_mb)


def cost(spec: Spec) -> float | None:
    """IP bytes a run moves (its calls, both directions); ``None`` for a capacity search,
    which meters itself step by step against the cap."""
    if spec.find_capacity:
        return None
    return spec.calls * call_bytes(MEDIA_PROFILES[spec.profile], spec.duration_s)


def base_tags(ctx: Context, spec: Spec) -> dict[str, str]:
    return {**ctx.tags, "target": spec.target, "profile": spec.profile, "method": "udp"}
