"""The capacity search (``--find-capacity``): the largest number of concurrent calls that
meets the minimum gates — 1, 2, 4, … until a failure, then bisect; bounded by ``max_calls``,
the time budget and the byte cap, each step metered against the cap as it goes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from netready.probes.media.probe import measure
from netready.probes.media.spec import Spec, base_tags, call_bytes, cap_bytes
from netready.probes.media.verdict import Verdict
from netready.probes.media.wire import MEDIA_PROFILES

from netready.plugin import Context
from netready.records import Record, failure


@dataclass
class _Search:
    """Where the search stands: the largest passing count, the smallest failing one."""

    spec: Spec
    step_s: float
    budget_bytes: int
    t0: float = field(default_factory=time.monotonic)
    used: int = 0
    lo: int = 0
    hi: int | None = None
    n: int = 1
    steps: list[str] = field(default_factory=list)
    limit_reason: str = ""
    complete: bool = True

    def over_budget(self) -> str | None:
        """The budget the next step (``n`` calls) would exceed, or None."""
        need_b = self.n * call_bytes(MEDIA_PROFILES[self.spec.profile], self.step_s)
        if self.used + need_b > self.budget_bytes:
            return f"byte budget {self.budget_bytes / 1e6:g} MB"
        overhead_s = 2.0 + self.spec.timeout_s
        if time.monotonic() - self.t0 + self.step_s + overhead_s > self.spec.budget_s:
            return f"time budget {self.spec.budget_s:g} s"
        return None

    def advance(self, verdict: Verdict) -> bool:
        """Take a step's verdict; choose the next count. False when the search is done."""
        n = self.n
        self.steps.append(f"{n}:{'pass' if verdict.passed else 'fail'}")
        if verdict.passed:
            self.lo = n
        else:
            self.hi = n
            self.limit_reason = f"{n} call(s): " + "; ".join(verdict.reasons)
        if self.hi is None:
            if n >= self.spec.max_calls:
                self.limit_reason = (
                    f"max_calls {self.spec.max_calls} reached (capacity at least this)"
                )
                self.complete = False
                return False
            self.n = min(n * 2, self.spec.max_calls)
            return True
        if self.hi - self.lo <= 1:
            return False
        self.n = (self.lo + self.hi) // 2
        return True

    def result(self, tags: dict[str, str]) -> Record:
        prof = MEDIA_PROFILES[self.spec.profile]
        return Record(
            "media",
            {**tags, "result": "ok"},
            {
                "capacity_calls": self.lo,
                "search_complete": self.complete,
                "limit_reason": self.limit_reason or "none",
                "steps": ",".join(self.steps),
                "step_duration_s": float(self.step_s),
                "elapsed_s": time.monotonic() - self.t0,
                "bytes_moved": self.used,
                "per_call_kbps": prof.kbps,
            },
        )


async def find_capacity(ctx: Context, spec: Spec) -> list[Record]:
    """Largest number of concurrent calls that meets the minimum gates: 1, 2, 4, … until a
    failure, then bisect; bounded by ``max_calls``, ``budget_s`` and the byte cap."""
    tags = {**base_tags(ctx, spec), "method": "find_capacity"}
    s = _Search(spec, spec.step_duration_s or spec.duration_s, cap_bytes(ctx, spec))
    out: list[Record] = []
    while True:
        what = s.over_budget()
        if what is not None:
            if not s.steps:
                return [
                    failure(
                        "media",
                        tags,
                        "budget_exceeded",
                        f"{s.n} call(s) of {s.step_s:g} s would exceed the {what}",
                        capacity_calls_min=0,
                    )
                ]
            s.complete = False
            s.limit_reason = f"search stopped at the {what} before testing {s.n} calls"
            break
        n = s.n
        recs, verdict, fail_result, moved = await measure(
            ctx, spec, n, s.step_s, method="find_capacity"
        )
        s.used += moved
        out.extend(recs)
        ctx.note(
            f"media: {n} concurrent {spec.profile} call(s): "
            + (fail_result or ("pass" if verdict and verdict.passed else "fail"))
        )
        if verdict is None:
            reason = recs[0].fields.get("reason", fail_result)
            if s.lo == 0 and s.hi is None:
                msg = f"capacity search failed at {n} call(s): {reason}"
                return [*out, failure("media", tags, fail_result or "error", msg)]
            s.steps.append(f"{n}:{fail_result}")
            s.complete = False
            s.limit_reason = f"{n} calls: {reason}"
            break
        if not s.advance(verdict):
            break
        await asyncio.sleep(0.5)  # let queues drain between steps
    out.append(s.result(tags))
    return out
