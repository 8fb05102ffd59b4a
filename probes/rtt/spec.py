"""The rtt probe's options (``netready probe rtt``, an inventory target's ``params``)."""

from __future__ import annotations

from netready.probes.rtt import twamp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready.inventory import split_hostport


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(
        description="TWAMP-light reflector HOST:PORT or [IPv6]:PORT (default port 862)"
    )
    duration_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="seconds of sending",
        json_schema_extra={"cli": "--duration"},
    )
    rate_pps: float = Field(
        50.0, gt=0, le=10_000, description="packets per second", json_schema_extra={"cli": "--rate"}
    )
    size: int = Field(
        twamp.REFLECT_MIN,
        ge=twamp.REFLECT_MIN,
        le=1472,
        description="UDP payload bytes (>= 41 so the reply can be symmetric)",
    )
    timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds to wait for late replies",
        json_schema_extra={"cli": "--timeout"},
    )
    dscp: int = Field(0, ge=0, le=63, description="DSCP to mark packets with (46 for EF)")
    window_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="one record per window of sending, seconds (the quality targets use 15)",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v, 862)
        return v
