"""The site agent: schedule -> run probes/collectors -> spool -> ship.

Each task (a target's probe, or a router collector) has an interval and a random splay so
6,000 sites do not fire at once. Every record is committed to the spool before anything
else happens to it; a shipper drains the spool to the central store in the background.

``--once`` runs every task once, ships, and exits (for cron or a systemd timer).
SIGTERM/SIGINT: no new tasks start, running probes are cancelled, the write in hand
finishes, and the agent exits; whatever was not shipped stays in the spool.

The agent reports on itself with an ``agent`` record every 5 minutes and at the end of ``--once``: spool depth,
dropped (evicted by quota) and dead-lettered counts, last ship time, ship latency, version,
resident memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from netready import __version__, budget, registry
from netready.errors import ConfigError, NetreadyError
from netready.inventory import Inventory, Site, load
from netready.records import Record, failure, now_ms
from netready.shipper import DrainResult, Shipper
from netready.spool import Spool

log = logging.getLogger("netready.agent")


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Secrets never reach the logger: only references do."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k in _EXTRA:
            if hasattr(record, k):
                out[k] = getattr(record, k)
        if record.exc_info and log.isEnabledFor(logging.DEBUG):
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={getattr(record, k)}" for k in _EXTRA if hasattr(record, k))
        return super().format(record) + (" " + extra if extra else "")


_EXTRA = ("site", "task", "result", "records", "seconds")


def setup_logging(fmt: str, level: str) -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level.upper())


@dataclass
class Task:
    """One scheduled job: a plugin, its validated spec, and how often."""

    name: str
    plugin: registry.Plugin
    spec: Any
    interval_s: float
    next_at: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.plugin.kind}:{self.plugin.name}:{self.name}"


def build_tasks(inv: Inventory, site: Site, only: set[str] | None = None) -> list[Task]:
    """Validate every target's spec before any I/O; ConfigError names the site and target."""
    tasks: list[Task] = []
    for t in inv.targets_for(site):
        if only and t.probe not in only and t.name not in only:
            continue
        plugin = registry.get("probe", t.probe)
        spec = plugin.make_spec(
            {"target": t.address, **t.params}, where=f"site {site.ods} target {t.name}"
        )
        interval = t.interval_s or inv.defaults.intervals_s.get(t.probe, 300.0)
        tasks.append(Task(t.name, plugin, spec, interval))
    if site.router is not None:
        for kind in ("snmp", "ssh"):
            if getattr(site.router, kind) is None or (only and kind not in only):
                continue
            plugin = registry.get("collector", kind)
            spec = plugin.make_spec({}, where=f"site {site.ods} router {kind}")
            tasks.append(
                Task(f"router-{kind}", plugin, spec, inv.defaults.intervals_s.get(kind, 300.0))
            )
    return tasks


@dataclass
class Agent:
    inventory: Inventory
    site: Site
    spool: Spool
    state_dir: Path
    force: bool = False
    only: set[str] | None = None
    tasks: list[Task] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ship_stop: threading.Event = field(default_factory=threading.Event)
    last_drain: DrainResult | None = None
    recent_traffic: deque[Record] = field(default_factory=lambda: deque(maxlen=256))
    last_self_record: float = float("-inf")  # monotonic time of the last `agent` record

    def __post_init__(self) -> None:
        self.tasks = build_tasks(self.inventory, self.site, self.only)
        self.ctx = registry.Context(
            site=self.site, inventory=self.inventory, state_dir=self.state_dir, force=self.force
        )
        self.shipper: Shipper | None = None
        cfg = self.inventory.store
        if cfg.kind != "embedded":
            from netready.influx import writer_for

            self.shipper = Shipper(self.spool, writer_for(cfg), self.inventory.agent.batch_size)

    async def run_task(self, task: Task) -> list[Record]:
        """Run one task; failures become records; the records are spooled before returning."""
        extra = {"site": self.site.ods, "task": task.label}
        t0 = time.monotonic()
        recs: list[Record]
        refusal = None
        if task.plugin.heavy:
            refusal = budget.admit(self.ctx, task.plugin, task.spec)
        if refusal:
            recs = [budget.refusal(self.ctx, task.plugin, task.spec, refusal)]
        else:
            t0_ms = now_ms()
            try:
                recs = await task.plugin.run(self.ctx, task.spec)
            except asyncio.CancelledError:
                raise
            except NetreadyError as e:
                recs = [
                    failure(
                        _measurement(task), {**self.ctx.tags, "target": task.name}, "error", str(e)
                    )
                ]
            except Exception as e:  # a bug in a plugin must not stop the agent
                log.exception("task failed", extra=extra)
                recs = [
                    failure(
                        _measurement(task),
                        {**self.ctx.tags, "target": task.name},
                        "error",
                        f"{type(e).__name__}: {e}",
                    )
                ]
            if task.plugin.name == "snmp":
                self._remember_traffic(recs)
            if task.plugin.heavy:
                budget.charge(self.ctx, self.site.ods, budget.bytes_used(recs))
                # a speed test taken while the site was busy is not the line's capacity
                recs = budget.mark_link_busy(recs, list(self.recent_traffic), t0_ms, now_ms())
        self.spool.enqueue(recs)
        log.info(
            "task done",
            extra={
                **extra,
                "records": len(recs),
                "result": ",".join(sorted({r.result for r in recs})),
                "seconds": round(time.monotonic() - t0, 3),
            },
        )
        return recs

    def _remember_traffic(self, recs: list[Record]) -> None:
        """Keep the last SNMP interface samples for the link-busy check of heavy tests."""
        self.recent_traffic.extend(r for r in recs if r.measurement == "if_traffic" and r.ok)

    def self_record(self) -> Record:
        st = self.spool.stats()
        fields: dict[str, Any] = {
            "spool_pending": st.pending,
            "spool_pending_bytes": st.pending_bytes,
            "spool_dropped": st.dropped,
            "dead_lettered": st.dead_lettered,
            "shipped": st.shipped,
            "enqueued": st.enqueued,
            "version": __version__,
            "tasks": len(self.tasks),
        }
        if st.last_ship_ms is not None:
            fields["last_ship_ms"] = st.last_ship_ms
        latency = self.spool.get_meta("ship_latency_s")  # kept in the spool: --once runs too
        if latency is not None:
            fields["ship_latency_s"] = float(latency)
        with contextlib.suppress(Exception):
            import psutil

            fields["rss_mb"] = psutil.Process().memory_info().rss / 1e6
        return Record("agent", {**self.ctx.tags, "host": os.uname().nodename}, fields)

    async def ship(
        self, deadline_s: float = 60.0, *, report_self: bool = False
    ) -> DrainResult | None:
        """Drain the spool. Every ``agent.self_report_s`` (default 300 s; and on ``report_self``)
        the agent's own ``agent`` record goes first: 6,000 sites write 1.7M, not 17M, a day."""
        every = self.inventory.agent.self_report_s
        if report_self or time.monotonic() - self.last_self_record >= every:
            self.spool.enqueue([self.self_record()])
            self.last_self_record = time.monotonic()
        if self.shipper is None:
            return None
        t0 = time.monotonic()
        res = await asyncio.to_thread(
            self.shipper.drain, deadline=time.monotonic() + deadline_s, stop=self.ship_stop
        )
        if res.shipped:
            self.spool.set_meta("ship_latency_s", f"{time.monotonic() - t0:.3f}")
        self.last_drain = res
        if res.error:
            log.warning(
                "shipping incomplete: %s (records stay in the spool)",
                res.error,
                extra={"site": self.site.ods},
            )
        return res

    async def once(self, ship_timeout_s: float = 60.0) -> list[Record]:
        out: list[Record] = []
        for task in self.tasks:
            if self.stop.is_set():
                break
            out += await self.run_task(task)
        if not self.stop.is_set():
            await self.ship(deadline_s=ship_timeout_s, report_self=True)
        return out

    async def forever(self) -> None:
        splay = self.inventory.agent.splay_s
        now = time.monotonic()
        for t in self.tasks:
            t.next_at = now + random.uniform(0, min(splay, t.interval_s))
        shipper = asyncio.create_task(self._ship_loop())
        running: set[asyncio.Task[list[Record]]] = set()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                for t in self.tasks:
                    if t.next_at <= now:
                        # Jitter each interval by +-5% so sites drift apart rather than align.
                        t.next_at = now + t.interval_s * random.uniform(0.95, 1.05)
                        job = asyncio.create_task(self.run_task(t))
                        running.add(job)
                        job.add_done_callback(running.discard)
                wait = min((t.next_at for t in self.tasks), default=now + 60) - time.monotonic()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=max(0.05, wait))
        finally:
            for job in list(running):
                job.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self.ship_stop.set()
            await asyncio.gather(shipper, return_exceptions=True)

    async def _ship_loop(self) -> None:
        interval = self.inventory.agent.ship_interval_s
        while not self.stop.is_set():
            await self.ship(deadline_s=max(5.0, interval))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=interval)


def _measurement(task: Task) -> str:
    return {
        "rtt": "rtt",
        "icmp": "rtt",
        "media": "media",
        "throughput": "throughput",
        "iperf3": "throughput",
        "speedtest": "throughput",
        "snmp": "if_traffic",
        "ssh": "dsl_line",
    }.get(task.plugin.name, task.plugin.name)


def open_spool(inv: Inventory, path: str | None) -> Spool:
    a = inv.agent
    return Spool(
        path or a.spool_path,
        ship=inv.store.kind != "embedded",
        embedded=inv.store.kind == "embedded",
        max_bytes=int(a.spool_max_mb * 1024 * 1024),
        max_age_s=a.spool_max_age_days * 86400,
    )


async def run_agent(
    inv: Inventory,
    site: Site,
    spool: Spool,
    *,
    once: bool,
    state_dir: Path,
    force: bool = False,
    only: set[str] | None = None,
    ship_timeout_s: float = 60.0,
) -> Agent:
    agent = Agent(inv, site, spool, state_dir, force=force, only=only)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop.set)
    log.info(
        "agent %s starting: site %s, %d tasks, store %s, spool %s",
        __version__,
        site.ods,
        len(agent.tasks),
        inv.store.kind,
        spool.path,
        extra={"site": site.ods},
    )
    if once:
        job = asyncio.create_task(agent.once(ship_timeout_s))
        stopper = asyncio.create_task(agent.stop.wait())
        done, _ = await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if job not in done:
            agent.ship_stop.set()
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
        stopper.cancel()
    else:
        await agent.forever()
    log.info("agent stopped", extra={"site": site.ods})
    return agent


@click.command("netready-agent")
@click.option(
    "--inventory",
    "inventory_path",
    default="site_inventory.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The estate's site inventory.",
)
@click.option(
    "--site",
    "site_ods",
    default=None,
    help="ODS code of this site (required if the inventory has more than one site).",
)
@click.option("--once", is_flag=True, help="Run every task once, ship, and exit.")
@click.option("--spool", "spool_path", default=None, help="Spool file (default: agent.spool_path).")
@click.option(
    "--state-dir",
    default=".netready-state",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Counter state, budgets, known hosts.",
)
@click.option("--only", default=None, help="Comma-separated probe/collector/target names to run.")
@click.option("--force", is_flag=True, help="Run heavy tests even in clinic hours or over budget.")
@click.option(
    "--ship-timeout",
    default=60.0,
    show_default=True,
    help="--once: give up shipping after this many seconds (records stay spooled).",
)
@click.option(
    "--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True
)
@click.option("--log-level", default="info", show_default=True)
@click.version_option(__version__, prog_name="netready-agent")
def agent_command(
    inventory_path: str,
    site_ods: str | None,
    once: bool,
    spool_path: str | None,
    state_dir: str,
    only: str | None,
    force: bool,
    ship_timeout: float,
    log_format: str,
    log_level: str,
) -> None:
    """The netready site agent: measure this site's link, spool, ship to the central store."""
    from netready.cli import fail

    setup_logging(log_format, log_level)
    try:
        inv = load(inventory_path)
        if site_ods is None:
            if len(inv.sites) != 1:
                raise ConfigError(
                    f"{inventory_path} has {len(inv.sites)} sites: choose one with --site ODS"
                )
            site = inv.sites[0]
        else:
            site = inv.site(site_ods)
        spool = open_spool(inv, spool_path)
        only_set = {x.strip() for x in only.split(",") if x.strip()} if only else None
        agent = asyncio.run(
            run_agent(
                inv,
                site,
                spool,
                once=once,
                state_dir=Path(state_dir),
                force=force,
                only=only_set,
                ship_timeout_s=ship_timeout,
            )
        )
        spool.close()
    except NetreadyError as e:
        raise fail(e) from None
    if once and agent.last_drain is not None and agent.last_drain.error:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    agent_command.main(args=argv, prog_name="netready-agent")


__all__ = ["Agent", "Task", "agent_command", "build_tasks", "main", "now_ms", "run_agent"]


if __name__ == "__main__":
    main()
