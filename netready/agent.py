"""The site agent: schedule -> run probes/collectors -> spool -> ship.

Each task (a target's probe, or a router collector) has an interval and a random splay so
6,000 sites do not fire at once. Every record is committed to the spool before anything
else happens to it; a shipper drains the spool to the central store in the background.

The agent never goes silent. Its long-lived loops (the scheduler and the ship loop) run under
one supervisor, ``supervise``: any exception is logged at ERROR with its reason, counted
(``loop_restarts``) and the loop restarts after an exponential, jittered backoff. Each task run
is guarded the same way (``task_errors``), so no asyncio task ever ends with an exception
nobody retrieved. Records the spool cannot take (disk full, ...) are kept in memory, oldest
first, up to ``HOLD_MAX``, with a WARNING, and committed before anything newer as soon as the
spool takes writes again (at the next task or ship cycle); only beyond ``HOLD_MAX`` are the
oldest lost, logged at ERROR and counted (``lost_records``). A corrupt spool is quarantined and
replaced by a fresh one (``netready.spool``), with an ERROR, counted in ``spool_quarantined``.

``--once`` runs every task once, ships, and exits (for cron or a systemd timer); its exit code
is 1 when any task raised, a record could not be committed, the spool was quarantined or the
ship did not finish (``netready-agent --help`` lists the exit codes). SIGTERM/SIGINT: no new tasks start, running probes are
cancelled, the write in hand finishes, and the agent exits; whatever was not shipped stays in
the spool.

The agent reports on itself with an ``agent`` record every 5 minutes and at the end of
``--once``: spool depth, dropped (evicted by quota) and dead-lettered counts, last ship time,
ship latency, version, resident memory, and the counters above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netready import __version__, budget, fleet, platform, registry
from netready.errors import ConfigError, NetreadyError, SpoolError
from netready.influx import LineProtocolError, encode
from netready.inventory import Inventory, Site, load
from netready.records import Record, failure, now_ms
from netready.shipper import Backoff, DrainResult, Shipper
from netready.spool import Spool, SpoolStats

log = logging.getLogger("netready.agent")

#: Records kept in memory while the spool cannot commit them (disk full): about 0.9 KB each.
HOLD_MAX = 20_000
#: Results that are decisions, not failures: logged at INFO.
NOT_FAILURES = frozenset({"ok", "skipped", "budget_exceeded", "link_busy"})


def reason(e: BaseException) -> str:
    """One line saying what went wrong: a NetreadyError's message, else ``Type: message``."""
    text = str(e) if isinstance(e, NetreadyError) else f"{type(e).__name__}: {e}".rstrip(": ")
    return " ".join(text.split())[:500]


@dataclass
class Health:
    """What went wrong since this agent process started (fields of the ``agent`` record)."""

    loop_restarts: int = 0
    task_errors: int = 0
    lost_records: int = 0
    deferred_busy: int = 0  # heavy tests put off because the site's line was in use
    ship_failed: str | None = None  # --once: the exception that stopped shipping


async def supervise(
    name: str,
    step: Callable[[], Awaitable[float]],
    stop: asyncio.Event,
    health: Health,
    backoff: Backoff | None = None,
) -> None:
    """Run ``step`` until ``stop`` is set; it returns the seconds until its next run.

    Any exception is logged at ERROR with its reason, counted in ``health.loop_restarts``, and
    the step runs again after a full-jitter exponential backoff (1 s doubling to 60 s, reset by a
    success). Only cancellation ends the loop early. The one supervisor of every agent loop.
    """
    backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
    failures = 0
    while not stop.is_set():
        try:
            delay = await step()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as e:
            failures += 1
            health.loop_restarts += 1
            delay = max(0.5, backoff.delay(failures))
            why = reason(e)
            log.error(
                "%s failed: %s; restarting in %.1f s",
                name,
                why,
                delay,
                exc_info=True,
                extra={"loop": name, "reason": why, "restarts": health.loop_restarts},
            )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.05, delay))


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
    """Validate every target's spec before any I/O; ConfigError names the site and target.

    Probes come from the site's targets; a collector is scheduled for every site that has the
    configuration it ``needs`` (``router.snmp``, ...). Intervals: the target's own, else
    ``defaults.intervals_s[plugin]``, else the plugin's declared ``interval_s``.
    """
    tasks: list[Task] = []
    for t in inv.targets_for(site):
        if only and t.probe not in only and t.name not in only:
            continue
        plugin = registry.get("probe", t.probe)
        spec = plugin.make_spec(
            {"target": t.address, **t.params}, where=f"site {site.ods} target {t.name}"
        )
        interval = t.interval_s or inv.defaults.interval_for(plugin.name, plugin.interval_s)
        tasks.append(Task(t.name, plugin, spec, interval))
    for name in registry.names("collector"):
        if only and name not in only:
            continue
        try:
            plugin = registry.get("collector", name)
        except ImportError as e:
            raise ConfigError(f"collector {name}: cannot be loaded: {e}") from None
        if not plugin.configured_for(site):
            continue
        where = plugin.needs or name
        spec = plugin.make_spec({}, where=f"site {site.ods} {where}")
        interval = inv.defaults.interval_for(plugin.name, plugin.interval_s)
        tasks.append(Task(where.replace(".", "-"), plugin, spec, interval))
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
    health: Health = field(default_factory=Health)
    held: deque[Record] = field(default_factory=deque)  # not yet committed (spool unwritable)
    running: set[asyncio.Task[list[Record]]] = field(default_factory=set)
    follower: fleet.Follower | None = None  # --config-url: the slice this agent follows
    textfile: Path | None = None  # node_exporter textfile of the agent record (netready.metrics)

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

    # ------------------------------------------------------------------ fleet configuration

    def reconfigure(self, inv: Inventory) -> None:
        """Take a changed slice into use without a restart (``netready.fleet``): the tasks
        are rebuilt now and run from the next scheduler step; a task running now finishes with
        the spec it started with. A task that stays keeps its next due time; a new one gets
        the splay. Store and spool settings apply when the agent next starts."""
        site = inv.site(self.site.ods)
        tasks = build_tasks(inv, site, self.only)
        due = {t.label: t.next_at for t in self.tasks}
        now = time.monotonic()
        for t in tasks:
            t.next_at = due.get(
                t.label, now + random.uniform(0, min(inv.agent.splay_s, t.interval_s))
            )
        if inv.store != self.inventory.store or any(
            getattr(inv.agent, k) != getattr(self.inventory.agent, k)
            for k in ("spool_path", "spool_max_mb", "spool_max_age_days")
        ):
            log.warning(
                "the new configuration changes the store or the spool: that applies when the "
                "agent next starts (it starts from this configuration)",
                extra={"site": site.ods},
            )
            inv = inv.model_copy(update={"store": self.inventory.store})
        self.inventory, self.site, self.tasks = inv, site, tasks
        self.ctx = registry.Context(
            site=site, inventory=inv, state_dir=self.state_dir, force=self.force
        )
        if self.follower is not None:
            self.follower.counters.config_applied += 1
        log.info(
            "configuration changed: %d tasks (%s)",
            len(tasks),
            ", ".join(sorted(t.label for t in tasks))[:500],
            extra={"site": site.ods, "tasks": len(tasks)},
        )

    async def _config_step(self) -> float:
        assert self.follower is not None
        inv = await self.follower.poll()
        if inv is not None:
            self.reconfigure(inv)
        return self.follower.interval_s

    # ------------------------------------------------------------------ tasks

    async def run_task(self, task: Task) -> list[Record]:
        """Run one task; failures become records; the records are committed before returning
        (or held in memory if the spool cannot take them)."""
        extra: dict[str, Any] = {"site": self.site.ods, "task": task.label}
        t0 = time.monotonic()
        recs: list[Record]
        plugin = task.plugin
        refused = budget.admit(self.ctx, plugin, task.spec)
        busy = self._defer_busy(task) if refused is None else None
        if refused is not None:
            recs = [budget.refusal(self.ctx, plugin, refused)]
        elif busy is not None:
            recs = [busy]
        else:
            t0_ms = now_ms()
            try:
                recs = await plugin.run(self.ctx, task.spec)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug or a bad start must not stop the agent
                why = reason(e)
                self.health.task_errors += 1
                log.error(
                    "task %s raised: %s",
                    task.label,
                    why,
                    exc_info=not isinstance(e, NetreadyError),
                    extra={**extra, "reason": why},
                )
                tags = {**self.ctx.tags, "target": task.name}
                recs = [failure(plugin.measurement, tags, "error", why)]
            try:
                self._remember_traffic(recs)
                self._count_traffic(task, recs)
                if plugin.heavy:
                    budget.charge(self.ctx, self.site.ods, budget.bytes_used(recs))
                    # a speed test taken while the site was busy is not the line's capacity
                    recs = budget.mark_link_busy(recs, list(self.recent_traffic), t0_ms, now_ms())
            except Exception as e:  # the records still get committed
                self.health.task_errors += 1
                log.error(
                    "task %s: budget bookkeeping failed: %s",
                    task.label,
                    reason(e),
                    extra={**extra, "reason": reason(e)},
                )
        self.commit(recs)
        extra |= {
            "records": len(recs),
            "result": ",".join(sorted({r.result for r in recs})),
            "seconds": round(time.monotonic() - t0, 3),
        }
        failed = [r for r in recs if r.result not in NOT_FAILURES]
        if failed:
            why = "; ".join(sorted({f"{r.result}: {r.fields.get('reason', '')}" for r in failed}))
            log.warning("task %s failed: %s", task.label, why[:500], extra=extra | {"reason": why})
        elif refused is not None:
            log.info(
                "task %s not run: %s",
                task.label,
                refused.reason,
                extra=extra | {"reason": refused.reason, "refusal": refused.code.value},
            )
        else:
            log.info("task done", extra=extra)
        return recs

    async def _task_job(self, task: Task) -> list[Record]:
        """A task run that never ends in an exception: anything unexpected is logged at ERROR
        with its reason and counted in ``task_errors``."""
        try:
            return await self.run_task(task)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.health.task_errors += 1
            why = reason(e)
            log.error(
                "task %s failed: %s",
                task.label,
                why,
                exc_info=True,
                extra={"site": self.site.ods, "task": task.label, "reason": why},
            )
            return []

    def _defer_busy(self, task: Task) -> Record | None:
        """A heavy test on a line in use (``budget.user_busy`` on the recent ``if_traffic``)
        is not run: a ``skipped`` record with the reason, counted in ``deferred_busy``, and
        the task is tried again after ``budget.retry_delay_s()``. Forced runs are not put
        off."""
        if not task.plugin.heavy or self.force:
            return None
        link = self.site.link
        why = budget.user_busy(
            self.recent_traffic, now_ms(), {"down": link.down_mbps, "up": link.up_mbps}
        )
        if why is None:
            return None
        self.health.deferred_busy += 1
        task.next_at = time.monotonic() + budget.retry_delay_s()
        tags = {**self.ctx.tags, "target": task.name, "method": task.plugin.method}
        return failure(task.plugin.measurement, tags, "skipped", why)

    def _count_traffic(self, task: Task, recs: list[Record]) -> None:
        """Every test's wire bytes, as its plugin declares them (``Plugin.traffic``), go into
        the site's monthly traffic (``budget``)."""
        nbytes = budget.wire_bytes(task.plugin, task.spec, recs)
        budget.record_traffic(self.ctx, self.site.ods, nbytes)

    def _spread(self, task: Task) -> bool:
        """Heavy tests are spread over their slots unless the agent is forced or the
        inventory asks for no splay (``agent.splay_s: 0``: start everything now)."""
        return task.plugin.heavy and not self.force and self.inventory.agent.splay_s > 0

    def _first_run_at(self, task: Task, now: float, splay: float) -> float:
        """A heavy test's first run falls at a random instant of its slot (the whole
        interval, ``budget.slot_delay_s``); other tasks start within the splay."""
        if self._spread(task):
            later = budget.slot_delay_s(time.time(), task.interval_s)
            this_slot = later - task.interval_s  # the same instant of the current slot
            return now + (this_slot if this_slot >= 0 else later)
        return now + random.uniform(0, min(splay, task.interval_s))

    def _next_run_at(self, task: Task, now: float) -> float:
        """Heavy tests: a random instant of the next slot (sites spread over the interval);
        others: the interval +-5 % so sites drift apart rather than align."""
        if self._spread(task):
            return now + budget.slot_delay_s(time.time(), task.interval_s)
        return now + task.interval_s * random.uniform(0.95, 1.05)

    def _remember_traffic(self, recs: list[Record]) -> None:
        """Keep the last interface samples (``if_traffic``, whichever collector wrote them)
        for the link-busy check of heavy tests."""
        self.recent_traffic.extend(r for r in recs if r.measurement == "if_traffic" and r.ok)

    # ------------------------------------------------------------------ committing

    def commit(self, recs: list[Record]) -> bool:
        """Commit records after any still held in memory, in order. False: the spool could not
        take them; they are held (bounded by ``HOLD_MAX``) and retried by the next commit or
        ship cycle."""
        self.held.extend(self._storable(recs))
        over = len(self.held) - HOLD_MAX
        if over > 0:
            for _ in range(over):
                self.held.popleft()
            self.health.lost_records += over
            log.error(
                "spool unwritable for too long: the %d oldest records held in memory are lost "
                "(%d lost so far, %d held)",
                over,
                self.health.lost_records,
                len(self.held),
                extra={"site": self.site.ods, "held": len(self.held)},
            )
        return self.flush()

    def flush(self) -> bool:
        """Commit what is held in memory. True when nothing is left held."""
        if not self.held:
            return True
        batch = list(self.held)
        try:
            self.spool.enqueue(batch)
        except SpoolError as e:
            log.warning(
                "cannot commit to the spool: %s; %d records kept in memory, retrying",
                e,
                len(batch),
                extra={"site": self.site.ods, "held": len(batch), "reason": str(e)},
            )
            return False
        for _ in batch:
            self.held.popleft()
        return True

    def _storable(self, recs: list[Record]) -> list[Record]:
        """Drop (with an ERROR, counted) records that can never be written: a probe's bug must
        not block every record behind it in the hold."""
        if not self.spool.ship:
            return recs
        out = []
        for r in recs:
            try:
                encode(r)
            except LineProtocolError as e:
                self.health.task_errors += 1
                log.error(
                    "record dropped, it cannot be written (a bug in its probe): %s",
                    e,
                    extra={"site": self.site.ods, "reason": str(e)},
                )
                continue
            out.append(r)
        return out

    def self_record(self) -> Record:
        st = self.spool.stats()
        h = self.health
        fields: dict[str, Any] = {
            "spool_pending": st.pending,
            "spool_pending_bytes": st.pending_bytes,
            "spool_dropped": st.dropped,
            "spool_quarantined": st.quarantined,
            "dead_lettered": st.dead_lettered,
            "shipped": st.shipped,
            "enqueued": st.enqueued,
            "loop_restarts": h.loop_restarts,
            "task_errors": h.task_errors,
            "held_records": len(self.held),
            "lost_records": h.lost_records,
            "deferred_busy": h.deferred_busy,
            "version": __version__,
            "tasks": len(self.tasks),
        }
        if self.follower is not None:
            c = self.follower.counters
            fields |= {
                "config_errors": c.config_errors,
                "config_unreachable": c.config_unreachable,
                "config_applied": c.config_applied,
            }
        if st.last_ship_ms is not None:
            fields["last_ship_ms"] = st.last_ship_ms
        with contextlib.suppress(Exception):  # the budget file is optional bookkeeping
            fields["traffic_month_mb"] = budget.traffic_month(self.ctx, self.site.ods) / 1e6
            fields["traffic_month_budget_mb"] = budget.MONTHLY_MB
        latency = self.spool.get_meta("ship_latency_s")  # kept in the spool: --once runs too
        if latency is not None:
            fields["ship_latency_s"] = float(latency)
        with contextlib.suppress(Exception):
            import psutil

            fields["rss_mb"] = psutil.Process().memory_info().rss / 1e6
        return Record("agent", {**self.ctx.tags, "host": platform.hostname()}, fields)

    def write_textfile(self, rec: Record) -> None:
        """``--textfile``: the agent record for node_exporter; a failure is logged and counted
        (``task_errors``), never stops the ship loop."""
        if self.textfile is None:
            return
        from netready.metrics import write_textfile

        try:
            write_textfile(self.textfile, rec)
        except OSError as e:
            self.health.task_errors += 1
            log.warning(
                "cannot write --textfile %s: %s",
                self.textfile,
                e.strerror or e,
                extra={"site": self.site.ods, "reason": str(e)},
            )

    # ------------------------------------------------------------------ shipping

    async def ship(
        self, deadline_s: float = 60.0, *, report_self: bool = False
    ) -> DrainResult | None:
        """Commit what is held, then drain the spool. Every ``agent.self_report_s`` (default
        300 s; and on ``report_self``) the agent's own ``agent`` record goes first: 6,000 sites
        write 1.7M, not 17M, a day. A spool failure raises (the supervisor logs and retries)."""
        self.flush()
        every = self.inventory.agent.self_report_s
        if report_self or time.monotonic() - self.last_self_record >= every:
            rec = self.self_record()
            self.commit([rec])
            self.last_self_record = time.monotonic()
            self.write_textfile(rec)
        if self.shipper is None:
            return None
        t0 = time.monotonic()
        res = await asyncio.to_thread(
            self.shipper.drain, deadline=time.monotonic() + deadline_s, stop=self.ship_stop
        )
        self.last_drain = res
        if res.shipped:
            self.spool.set_meta("ship_latency_s", f"{time.monotonic() - t0:.3f}")
        if res.error:
            log.warning(
                "shipping incomplete: %s (records stay in the spool)",
                res.error,
                extra={"site": self.site.ods, "reason": res.error},
            )
        return res

    # ------------------------------------------------------------------ running

    async def once(self, ship_timeout_s: float = 60.0) -> list[Record]:
        out: list[Record] = []
        for task in self.tasks:
            if self.stop.is_set():
                break
            out += await self._task_job(task)
        if not self.stop.is_set():
            try:
                await self.ship(deadline_s=ship_timeout_s, report_self=True)
            except Exception as e:
                self.health.ship_failed = reason(e)
                log.error(
                    "shipping failed: %s",
                    self.health.ship_failed,
                    exc_info=True,
                    extra={"site": self.site.ods, "reason": self.health.ship_failed},
                )
        return out

    async def forever(self) -> None:
        splay = self.inventory.agent.splay_s
        now = time.monotonic()
        for t in self.tasks:
            t.next_at = self._first_run_at(t, now, splay)
        steps: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            ("scheduler", self._schedule_step),
            ("ship loop", self._ship_step),
        ]
        if self.follower is not None:
            steps.append(("config follower", self._config_step))
        loops = [
            asyncio.create_task(supervise(n, step, self.stop, self.health)) for n, step in steps
        ]
        try:
            await self.stop.wait()
        finally:
            self.ship_stop.set()
            for job in list(self.running):
                job.cancel()
            await asyncio.gather(*self.running, return_exceptions=True)
            await asyncio.gather(*loops, return_exceptions=True)
            self.flush()

    async def _schedule_step(self) -> float:
        """Start every due task; return the seconds until the next one is due."""
        now = time.monotonic()
        for t in self.tasks:
            if t.next_at <= now:
                t.next_at = self._next_run_at(t, now)
                job = asyncio.create_task(self._task_job(t), name=t.label)
                self.running.add(job)
                job.add_done_callback(self.running.discard)
        return min((t.next_at for t in self.tasks), default=now + 60) - time.monotonic()

    async def _ship_step(self) -> float:
        interval = self.inventory.agent.ship_interval_s
        await self.ship(deadline_s=max(5.0, interval))
        return interval

    def problems(self, *, once: bool) -> list[str]:
        """Why this run should exit 1 (empty: exit 0). See ``EXIT_CODES``."""
        out = []
        if self.held:
            out.append(f"{len(self.held)} records could not be committed to the spool and are lost")
        if not once:
            return out
        h = self.health
        if h.task_errors:
            out.append(f"{h.task_errors} task error(s)")
        if h.lost_records:
            out.append(f"{h.lost_records} records lost while the spool was unwritable")
        if self.spool.quarantines:
            out.append(f"corrupt spool quarantined as {', '.join(self.spool.quarantines)}")
        if h.ship_failed:
            out.append(f"shipping failed: {h.ship_failed}")
        elif self.last_drain is not None and self.last_drain.error:
            out.append(f"shipping did not finish: {self.last_drain.error}")
        return out


def open_spool(
    inv: Inventory,
    path: str | None,
    *,
    exclusive: bool = False,
    readonly: bool = False,
    recover: bool = False,
) -> Spool:
    """The inventory's spool (or ``path``). The agent opens it ``exclusive`` and ``recover``;
    ``netready ship`` ``exclusive``; ``netready spool stats`` ``readonly``."""
    a = inv.agent
    return Spool(
        path or a.spool_path,
        ship=inv.store.kind != "embedded",
        embedded=inv.store.kind == "embedded",
        max_bytes=int(a.spool_max_mb * 1024 * 1024),
        max_age_s=a.spool_max_age_days * 86400,
        exclusive=exclusive,
        readonly=readonly,
        recover=recover,
    )


def spool_stats(
    inventory_path: str, spool_path: str | None = None, dead: int = 5
) -> tuple[SpoolStats, list[tuple[str, str]]]:
    """``netready spool stats``: the spool's counters and its last ``dead`` dead letters.
    Read-only: works while the agent runs (it takes no lock and writes nothing)."""
    with open_spool(load(inventory_path), spool_path, readonly=True) as sp:
        return sp.stats(), sp.dead_letters()[-dead:]


@dataclass
class ShipReport:
    drain: DrainResult
    pending: int  # records still in the spool afterwards


def ship_now(
    inventory_path: str,
    spool_path: str | None = None,
    timeout_s: float = 60.0,
    batch_size: int | None = None,
) -> ShipReport | None:
    """``netready ship``: drain the spool to the central store for up to ``timeout_s``;
    ``None`` when the store is embedded (nothing to ship). Takes the spool exclusively
    (``SpoolLocked`` while an agent or another shipper holds it: no record is sent twice)."""
    from netready.influx import writer_for

    inv = load(inventory_path)
    with open_spool(inv, spool_path, exclusive=True) as sp:
        if inv.store.kind == "embedded":
            return None
        with writer_for(inv.store) as w:
            res = Shipper(sp, w, batch_size or inv.agent.batch_size).drain(
                deadline=time.monotonic() + timeout_s
            )
        return ShipReport(res, sp.stats().pending)


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
    follower: fleet.Follower | None = None,
    textfile: Path | None = None,
) -> Agent:
    agent = Agent(
        inv, site, spool, state_dir, force=force, only=only, follower=follower, textfile=textfile
    )
    loop = asyncio.get_running_loop()
    platform.on_stop_signals(loop, agent.stop.set)
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
            agent.flush()
        stopper.cancel()
    else:
        await agent.forever()
    log.info("agent stopped", extra={"site": site.ods})
    return agent


def run(
    inventory_path: str,
    site_ods: str | None = None,
    *,
    once: bool = False,
    spool_path: str | None = None,
    state_dir: str | Path = ".netready-state",
    only: str | None = None,
    force: bool = False,
    ship_timeout_s: float = 60.0,
    config_url: str | None = None,
    config_key: str | None = None,
    config_ca: str | None = None,
    textfile: str | None = None,
) -> list[str]:
    """The agent as ``netready-agent`` runs it: load the inventory (or, with ``config_url``,
    the site's signed slice from the config server, else its last good copy: ``netready.
    fleet``), pick the site (``site_ods``, or the only one), check every task's spec (bad specs
    are a ``ConfigError`` before the spool is touched), open the spool exclusively and run
    until stopped (or once). Returns the problems that make the run a failure
    (``Agent.problems``), already logged at ERROR."""
    only_set = {x.strip() for x in only.split(",") if x.strip()} if only else None
    follower = None
    if config_url is not None:
        if not (site_ods and config_key):
            raise ConfigError("--config-url needs --site ODS and --config-key FILE")
        follower = fleet.follower(
            config_url,
            site_ods,
            config_key,
            state_dir,
            ca_file=config_ca,
            check=lambda i: build_tasks(i, i.site(site_ods), only_set),
        )
        inv = platform.run(follower.start())
    else:
        inv = load(inventory_path)
    if site_ods is None:
        if len(inv.sites) != 1:
            raise ConfigError(
                f"{inventory_path} has {len(inv.sites)} sites: choose one with --site ODS"
            )
        site = inv.sites[0]
    else:
        site = inv.site(site_ods)
    build_tasks(inv, site, only_set)
    textfile_path = None
    if textfile:
        from netready.metrics import check_textfile

        textfile_path = check_textfile(textfile)
    spool = open_spool(inv, spool_path, exclusive=True, recover=True)
    try:
        agent = platform.run(
            run_agent(
                inv,
                site,
                spool,
                once=once,
                state_dir=Path(state_dir),
                force=force,
                only=only_set,
                ship_timeout_s=ship_timeout_s,
                follower=follower,
                textfile=textfile_path,
            )
        )
    finally:
        spool.close()
    problems = agent.problems(once=once)
    if problems:
        log.error("agent finished with problems: %s", "; ".join(problems), extra={"site": site.ods})
    return problems


__all__ = [
    "Agent",
    "Health",
    "ShipReport",
    "Task",
    "build_tasks",
    "now_ms",
    "run",
    "run_agent",
    "ship_now",
    "spool_stats",
    "supervise",
]
