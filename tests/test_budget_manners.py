"""Good manners on a live line (netready/budget.py, netready/agent.py): heavy tests deferred
while the router shows user traffic, spread at random within their slot, and every test's
traffic counted per month. Real parts: the agent with a real spool and budget file (SQLite);
the heavy test is an in-process plugin declared as a third-party one would be (it records
that it ran), the router's counters are ``if_traffic`` records as the SNMP collector writes
them."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from netready import budget, inventory
from netready.plugin import Context, Plugin
from netready.records import Record

LINE = {"down": 7.0, "up": 0.8}


def _if(direction: str, rate: float, age_s: float, now_ms: int, wan: bool = True) -> Record:
    tags = {"site": "Z99002", "direction": direction, "result": "ok"}
    fields = {"rate_mbps": rate, "interval_s": 60.0, "is_wan": wan}
    return Record("if_traffic", tags, fields, now_ms - int(age_s * 1000))


def test_user_busy_reads_the_latest_wan_sample_per_direction() -> None:
    now = 1_800_000_000_000
    # 3 Mbit/s of downloads on a 7 Mbit/s line: over 20 %
    why = budget.user_busy([_if("in", 3.0, 30, now)], now, LINE)
    assert why is not None and "3.00 Mbit/s down" in why and "deferred" in why
    # 0.3 Mbit/s of upload on 0.8 is over 20 % too; 1 Mbit/s down is not
    assert budget.user_busy([_if("in", 1.0, 30, now), _if("out", 0.3, 30, now)], now, LINE)
    assert budget.user_busy([_if("in", 1.0, 30, now)], now, LINE) is None
    # the latest sample decides: busy 5 min ago, quiet now
    assert budget.user_busy([_if("in", 5.0, 300, now), _if("in", 0.5, 20, now)], now, LINE) is None
    # too old to say anything about now; a LAN port is not the line; no collector: never busy
    assert budget.user_busy([_if("in", 5.0, 900, now)], now, LINE) is None
    assert budget.user_busy([_if("in", 5.0, 10, now, wan=False)], now, LINE) is None
    assert budget.user_busy([], now, LINE) is None


def test_heavy_slots_spread_6000_sites_over_the_interval() -> None:
    """Every draw falls in the next wall-clock slot; 6,000 sites' 6 h slots fill evenly."""
    rng = random.Random(14)
    interval = 21600.0
    wall = 1_800_003_333.0
    slot0 = (wall // interval + 1) * interval
    starts = [wall + budget.slot_delay_s(wall, interval, rng) for _ in range(6000)]
    assert all(slot0 <= s < slot0 + interval for s in starts)
    bins = [0] * 36  # 10-minute bins
    for s in starts:
        bins[int((s - slot0) // 600)] += 1
    # ~167 a bin; the splay alone would have put all 6,000 in the first 30 s
    assert max(bins) < 2 * 6000 / 36 and min(bins) > 0.5 * 6000 / 36
    delays = [budget.retry_delay_s(rng) for _ in range(200)]
    assert all(450 <= d <= 1350 for d in delays) and max(delays) - min(delays) > 600


def test_monthly_traffic_of_all_tests(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path)
    d = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)
    budget.record_traffic(ctx, "Z99002", 5_000_000, d)
    budget.record_traffic(ctx, "Z99002", 2_000_000, d + dt.timedelta(minutes=30))
    budget.record_traffic(ctx, "Z99002", 1_000_000, d + dt.timedelta(hours=2))  # 1 December
    budget.record_traffic(ctx, "OTHER", 9_000_000, d)
    assert budget.traffic_month(ctx, "Z99002", d) == 7_000_000
    assert budget.traffic_month(ctx, "Z99002", d + dt.timedelta(hours=2)) == 1_000_000
    # each probe's traffic as it declares it (Plugin.traffic): a TCP test's payload with its
    # headers; rtt's and icmp's packets there and back; media's IP bytes + Ethernet per packet
    from netready.probes import icmp, media, rtt, throughput

    tp = Record("throughput", {}, {"bytes": 956_000})
    assert budget.wire_bytes(throughput.PLUGIN, None, [tp]) == 1_000_000
    win = [Record("rtt", {}, {"sent": 750}), Record("rtt", {}, {"sent": 250, "received": 0})]
    spec = rtt.Spec(target="127.0.0.1:862", size=41)
    assert budget.wire_bytes(rtt.PLUGIN, spec, win) == 1000 * 2 * (41 + 42)
    echo = icmp.Spec(target="127.0.0.1", size=56)
    assert budget.wire_bytes(icmp.PLUGIN, echo, [Record("rtt", {}, {"sent": 20})]) == 20 * 2 * 98
    call = [
        Record("media", {"direction": "up"}, {"sent": 1000}),
        Record("media", {"direction": "down"}, {"sent": 990}),
        Record("media", {"gate": "minimum"}, {"bytes": 1_200_000}),
        Record("media", {"method": "find_capacity"}, {"bytes_moved": 1_200_000}),  # not again
    ]
    assert budget.wire_bytes(media.PLUGIN, None, call) == 1_200_000 + 14 * 1990
    # a plugin that declares no traffic (a collector) adds nothing
    assert budget.wire_bytes(Plugin(kind="collector", name="zz", spec=_NoSpec, run=None,  # type: ignore[arg-type]
                                    measurement="m", method="x", summary="s"), None, call) == 0  # fmt: skip


class _NoSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def test_agent_defers_a_heavy_test_on_a_busy_line_and_counts_it(tmp_path: Path) -> None:
    from netready.agent import Agent, Task
    from netready.spool import Spool

    ran: list[float] = []

    async def heavy(ctx: Context, spec: Any) -> list[Record]:
        ran.append(time.monotonic())
        return [Record("throughput", {**ctx.tags, "direction": "down"}, {"bytes": 4_780_000})]

    plugin = Plugin(
        kind="probe", name="zz-heavy", spec=_NoSpec, run=heavy, measurement="throughput",
        method="test", summary="s", heavy=True, interval_s=21600.0,
        traffic=budget.tcp_bytes_traffic,
    )  # fmt: skip
    site = inventory.Site.model_validate(
        {
            "ods": "Z99002",
            "name": "Manners Surgery",
            "type": "gp_practice",
            "icb": "QHM",
            "link": {"tech": "adsl", "down_mbps": 7, "up_mbps": 0.8},
            "clinic_hours": {"days": []},  # any time is outside clinic hours
        }
    )
    inv = inventory.Inventory.model_validate(
        {"sites": [site.model_dump(mode="json")], "store": {"kind": "embedded"}}
    )
    site = inv.sites[0]
    with Spool(tmp_path / "spool.db", ship=False, embedded=True) as sp:
        agent = Agent(inv, site, sp, tmp_path, only={"zz-none"})
        task = Task("speed", plugin, _NoSpec(), 21600.0)
        agent.tasks = [task]
        now = int(time.time() * 1000)
        agent.recent_traffic.append(_if("in", 4.0, 60, now))  # someone is downloading
        before = time.monotonic()
        (rec,) = asyncio.run(agent.run_task(task))
        assert not ran and rec.result == "skipped" and "link busy" in str(rec.fields["reason"])
        assert agent.health.deferred_busy == 1
        # tried again within 7.5-22.5 min, not at the next 6 h slot
        assert before + 450 <= task.next_at <= time.monotonic() + 1350
        # the line is quiet again: the retry runs, and its traffic is counted for the month
        agent.recent_traffic.append(_if("in", 0.2, 5, int(time.time() * 1000)))
        (rec,) = asyncio.run(agent.run_task(task))
        assert len(ran) == 1 and rec.ok
        f = agent.self_record().fields
        assert f["deferred_busy"] == 1
        assert f["traffic_month_mb"] == 5.0  # 4.78 MB of payload + headers
        assert f["traffic_month_budget_mb"] == budget.MONTHLY_MB
        # a forced run is never put off
        agent.force = True
        agent.recent_traffic.append(_if("in", 6.0, 1, int(time.time() * 1000)))
        asyncio.run(agent.run_task(task))
        assert len(ran) == 2 and agent.health.deferred_busy == 1


def test_agent_places_heavy_runs_at_random_in_their_slot(tmp_path: Path) -> None:
    from netready.agent import Agent, Task
    from netready.spool import Spool

    async def noop(ctx: Context, spec: Any) -> list[Record]:
        return []

    heavy = Plugin(kind="probe", name="zz-h", spec=_NoSpec, run=noop, measurement="throughput",
                   method="t", summary="s", heavy=True, interval_s=21600.0)  # fmt: skip
    light = Plugin(kind="probe", name="zz-l", spec=_NoSpec, run=noop, measurement="rtt",
                   method="t", summary="s", interval_s=300.0)  # fmt: skip
    inv = inventory.Inventory.model_validate(
        {
            "sites": [
                {
                    "ods": "Z99003",
                    "name": "Slot Surgery",
                    "type": "gp_practice",
                    "icb": "QHM",
                    "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
                }
            ],
            "store": {"kind": "embedded"},
        }
    )
    with Spool(tmp_path / "spool.db", ship=False, embedded=True) as sp:
        agent = Agent(inv, inv.sites[0], sp, tmp_path, only={"zz-none"})
        h, lt = Task("h", heavy, _NoSpec(), 21600.0), Task("l", light, _NoSpec(), 300.0)
        now = time.monotonic()
        firsts = [agent._first_run_at(h, now, 30.0) - now for _ in range(300)]
        assert all(0 <= x < 2 * 21600 for x in firsts)
        assert max(firsts) - min(firsts) > 3600  # spread over hours, not the 30 s splay
        assert all(0 <= agent._first_run_at(lt, now, 30.0) - now <= 30 for _ in range(50))
        nexts = [agent._next_run_at(h, now) - now for _ in range(300)]
        wall = time.time()
        to_slot = (wall // 21600 + 1) * 21600 - wall
        assert all(to_slot - 1 <= x < to_slot + 21600 + 1 for x in nexts)
        assert all(285 <= agent._next_run_at(lt, now) - now <= 315 for _ in range(50))
        # forced (or splay_s 0): the heavy test starts within the splay as before
        agent.force = True
        assert all(0 <= agent._first_run_at(h, now, 30.0) - now <= 30 for _ in range(50))
