#!/usr/bin/env python3
"""Soak benchmark: the site agent on a bad day, against a real InfluxDB, nothing lost.

The real ``netready-agent`` runs rtt (TWAMP-light against ``netready reflector``) and media (an
emulated video call against ``netready responder``) every minute, both servers on loopback,
shipping every 5 s to a private influxd 1.6, its spool on a 16 MB tmpfs. Meanwhile the benchmark:

- SIGKILLs the agent 20 times (first 45 % of the run), restarting it at once;
- kills influxd (SIGKILL) 5 times, each time for 20 s, and restarts it on the same data;
- fills the spool's disk once (a file written until ENOSPC) for 45 s, then deletes it.

After the run the agent is stopped with SIGTERM, the spool is drained (``netready ship``) and one
table compares what the spool committed (its ``enqueued`` counter) with the rows InfluxDB holds
(goal: equal; dead-lettered and evicted: 0), shows the agent's resident memory and open file
descriptors at the start and the end of its last (longest) life (goal: flat), and, per fault,
the longest gap from the fault's end to the next acknowledged batch.

Run as root (tmpfs): ``.venv/bin/python bench/soak.py [--minutes 10]``. SIGTERM/SIGINT stop it
cleanly: processes killed, tmpfs unmounted, temporary files removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Fault:
    kind: str
    start_ms: int
    end_ms: int = 0  # when the fault was over (agent restarted, influxd up, disk freed)


@dataclass
class Result:
    stop_rc: int
    ship: str
    committed: int
    pending: int
    dead_lettered: int
    evicted: int
    landed: dict[str, int]
    tracebacks: int
    errors: int
    warnings: int
    lost_logged: int
    max_held: int


@dataclass
class Soak:
    minutes: float
    seed: int
    kills: int = 20
    influx_restarts: int = 5
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nr-soak-")))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    acks: set[int] = field(default_factory=set)
    mounted: bool = False
    samples: dict[str, tuple[float, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.disk = self.work / "disk"
        self.spool = self.disk / "spool.db"
        self.log = self.work / "agent.log"
        self.agent: subprocess.Popen[bytes] | None = None
        self.srv = None
        self.stop_monitor = threading.Event()

    # ------------------------------------------------------------------ set-up

    def setup(self) -> None:
        from faults import mount_tmpfs
        from influxd import Influxd

        (self.work / "influx").mkdir()
        mount_tmpfs(self.disk, "16m")
        self.mounted = True
        self.srv = srv = Influxd(str(self.work / "influx")).start()
        srv.create_db("soak")
        refl, resp = udp_port(), udp_port()
        for argv in (
            ["reflector", "--listen", f"127.0.0.1:{refl}"],
            ["responder", "--listen", f"127.0.0.1:{resp}"],
        ):
            self.procs.append(
                subprocess.Popen(
                    [PY, "-m", "netready.cli", *argv], env=ENV, stderr=subprocess.DEVNULL
                )
            )
        import yaml

        inv = {
            "version": 1,
            "store": {"kind": "influxdb_v1", "url": srv.url, "database": "soak"},
            "agent": {
                "spool_path": str(self.spool),
                "ship_interval_s": 5,
                "splay_s": 0,
                "self_report_s": 30,
            },
            "sites": [
                {
                    "ods": "Y81001",
                    "name": "Soak Surgery",
                    "type": "gp_practice",
                    "icb": "QHM",
                    "link": {"tech": "fttp", "down_mbps": 500, "up_mbps": 100},
                    "targets": [
                        {
                            "name": "core",
                            "probe": "rtt",
                            "address": f"127.0.0.1:{refl}",
                            "interval_s": 60,
                            "params": {"duration_s": 10, "rate_pps": 50, "window_s": 5},
                        },
                        {
                            "name": "call",
                            "probe": "media",
                            "address": f"127.0.0.1:{resp}",
                            "interval_s": 60,
                            "params": {"duration_s": 5, "timeout_s": 3},
                        },
                    ],
                }
            ],
        }
        self.inventory = self.work / "inventory.yaml"
        self.inventory.write_text(yaml.safe_dump(inv))

    def start_agent(self) -> None:
        with open(self.log, "ab") as fh:
            self.agent = subprocess.Popen(
                [
                    *(PY, "-m", "netready.cli.agent", "--inventory", str(self.inventory), "--force"),
                    *("--state-dir", str(self.work / "state"), "--log-format", "json"),
                ],
                env=ENV,
                stderr=fh,
                cwd=self.work,
            )

    # ------------------------------------------------------------------ watching

    def monitor(self) -> None:
        """Every 0.25 s: the spool's last acknowledged batch (meta.last_ship_ms), read-only."""
        while not self.stop_monitor.wait(0.25):
            try:
                con = sqlite3.connect(f"{self.spool.as_uri()}?mode=ro", uri=True, timeout=1)
                try:
                    row = con.execute("SELECT value FROM meta WHERE key='last_ship_ms'").fetchone()
                finally:
                    con.close()
            except sqlite3.Error:
                continue
            if row and row[0]:
                self.acks.add(int(row[0]))

    def sample(self, label: str) -> None:
        import psutil

        if self.agent is None or self.agent.poll() is not None:
            return
        p = psutil.Process(self.agent.pid)
        self.samples[label] = (p.memory_info().rss / 1e6, p.num_fds())

    # ------------------------------------------------------------------ faults

    def kill_agent(self) -> None:
        assert self.agent is not None
        f = Fault("agent SIGKILL", now_ms())
        self.agent.kill()
        self.agent.wait()
        self.start_agent()
        f.end_ms = now_ms()
        self.faults.append(f)

    def influx_down(self, hold: float, sleep: Callable[[float], None]) -> None:
        assert self.srv is not None and self.srv.proc is not None
        f = Fault("influxd killed", now_ms())
        self.srv.proc.kill()
        self.srv.proc.wait()
        sleep(hold)
        self.srv.start()
        f.end_ms = now_ms()
        self.faults.append(f)

    def disk_full(self, hold: float, sleep: Callable[[float], None]) -> None:
        from faults import fill

        f = Fault("spool disk full", now_ms())
        filler = fill(self.disk)
        sleep(hold)
        filler.unlink()
        f.end_ms = now_ms()
        self.faults.append(f)

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        total = self.minutes * 60
        rng = random.Random(self.seed)
        a_end = 0.45 * total
        kill_at = sorted(rng.uniform(20, a_end) for _ in range(self.kills))
        fr = [0.15, 0.35, 0.55, 0.8, 0.92][: self.influx_restarts]
        events: list[tuple[float, str]] = [(t, "kill") for t in kill_at]
        events += [(f * total, "influx") for f in fr]
        events += [(0.63 * total, "disk"), (a_end + 30, "sample_start"), (total - 5, "sample_end")]
        events.sort()
        influx_hold, disk_hold = min(20.0, 0.034 * total), min(45.0, 0.075 * total)
        t0 = time.monotonic()
        self.start_agent()
        threading.Thread(target=self.monitor, daemon=True).start()
        with Progress(
            TextColumn("[bold]soak[/] {task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as prog:
            task = prog.add_task("starting", total=total)

            def sleep_until(t: float) -> None:
                while (left := t - (time.monotonic() - t0)) > 0:
                    prog.update(task, completed=time.monotonic() - t0)
                    time.sleep(min(left, 0.5))

            def sleep(d: float) -> None:
                sleep_until(time.monotonic() - t0 + d)

            kills = 0
            for at, what in events:
                sleep_until(at)
                if what == "kill":
                    kills += 1
                    prog.update(task, description=f"agent SIGKILL {kills}/{self.kills}")
                    self.kill_agent()
                elif what == "influx":
                    prog.update(task, description="influxd down")
                    self.influx_down(influx_hold, sleep)
                elif what == "disk":
                    prog.update(task, description="spool disk full")
                    self.disk_full(disk_hold, sleep)
                else:
                    self.sample(what)
                prog.update(task, description="running")
            sleep_until(total)

    def finish(self) -> Result:
        """Stop the agent (SIGTERM), drain the spool, count both sides."""
        assert self.agent is not None and self.srv is not None
        self.agent.send_signal(signal.SIGTERM)
        rc = self.agent.wait(60)
        ship = subprocess.run(
            [
                PY,
                "-m",
                "netready.cli",
                "ship",
                "--inventory",
                str(self.inventory),
                "--timeout",
                "120",
            ],
            env=ENV,
            capture_output=True,
            text=True,
            cwd=self.work,
        )
        time.sleep(1)
        self.stop_monitor.set()
        from netready.spool import Spool

        with Spool(self.spool, readonly=True) as sp:
            st = sp.stats()
        landed = {}
        res = self.srv.query("SHOW MEASUREMENTS", "soak")["results"][0]
        for (m,) in res["series"][0]["values"] if "series" in res else []:
            rows = self.srv.query(f'SELECT * FROM "{m}"', "soak")["results"][0]
            landed[m] = len(rows["series"][0]["values"]) if "series" in rows else 0
        text = self.log.read_text(errors="replace")
        lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
        return Result(
            stop_rc=rc,
            ship=(ship.stderr.strip().splitlines() or [f"exit {ship.returncode}"])[-1],
            committed=st.enqueued,
            pending=st.pending,
            dead_lettered=st.dead_lettered,
            evicted=st.dropped,
            landed=landed,
            tracebacks=text.count("Traceback") + text.count("never retrieved"),
            errors=sum(1 for x in lines if x.get("level") == "error"),
            warnings=sum(1 for x in lines if x.get("level") == "warning"),
            lost_logged=sum(1 for x in lines if "are lost" in str(x.get("msg", ""))),
            max_held=max((int(x.get("held", 0)) for x in lines), default=0),
        )

    def cleanup(self) -> None:
        self.stop_monitor.set()
        for p in [self.agent, *self.procs]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if self.srv is not None:
            self.srv.close()
        if self.mounted:
            from faults import unmount

            unmount(self.disk)
            self.mounted = False
        shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------------ the table

    def gaps(self) -> dict[str, list[float]]:
        acks = sorted(self.acks)
        out: dict[str, list[float]] = {}
        for f in self.faults:
            after = next((a for a in acks if a >= f.end_ms), None)
            gap = (after - f.end_ms) / 1000 if after is not None else float("inf")
            out.setdefault(f.kind, []).append(gap)
        return out


def table(s: Soak, r: Result) -> str:
    landed = sum(r.landed.values())
    lost = r.committed - landed - r.dead_lettered - r.evicted
    rows = [
        ("records committed (spool `enqueued`)", f"{r.committed:,}", ""),
        (
            "records landed in InfluxDB",
            f"{landed:,}",
            ", ".join(f"{m} {n}" for m, n in sorted(r.landed.items())),
        ),
        ("lost (committed - landed - dead - evicted)", str(lost), "goal 0"),
        ("dead-lettered", str(r.dead_lettered), "goal 0"),
        ("evicted by quota", str(r.evicted), "goal 0"),
        ("pending after the final drain", str(r.pending), r.ship),
        (
            "most records held in memory (disk full)",
            str(r.max_held),
            "committed once space returned",
        ),
        ("records lost from memory (ERROR lines)", str(r.lost_logged), "goal 0"),
        ("tracebacks / unretrieved task exceptions", str(r.tracebacks), "goal 0"),
        ("agent exit status on the final SIGTERM", str(r.stop_rc), "goal 0"),
        ("ERROR / WARNING log lines", f"{r.errors} / {r.warnings}", "each with its reason"),
    ]
    for label, when in (("sample_start", "start of its last life (+30 s)"), ("sample_end", "end")):
        rss, fds = s.samples.get(label, (float("nan"), -1))
        rows.append((f"agent RSS / open fds at the {when}", f"{rss:.1f} MB / {fds}", ""))
    for kind, gaps in s.gaps().items():
        rows.append(
            (
                f"longest gap in shipping after: {kind}",
                f"{max(gaps):.1f} s",
                f"{len(gaps)} faults, median {sorted(gaps)[len(gaps) // 2]:.1f} s",
            )
        )
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    head = (
        f"soak: {s.minutes:g} min, seed {s.seed}; {s.kills} agent SIGKILLs, "
        f"{s.influx_restarts} influxd kills, 1 full disk; InfluxDB 1.6 on loopback, "
        "spool on a 16 MB tmpfs"
    )
    return "\n".join([head, ""] + [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    ap.add_argument("--kills", type=int, default=20, help="agent SIGKILLs (default 20)")
    ap.add_argument("--influx-restarts", type=int, default=5, help="influxd kills (default 5)")
    ap.add_argument("--seed", type=int, default=2026, help="random seed for the kill times")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/soak.py: needs root (it mounts a tmpfs for the spool)", file=sys.stderr)
        raise SystemExit(2)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    s = Soak(args.minutes, args.seed, kills=args.kills, influx_restarts=args.influx_restarts)
    try:
        s.setup()
        s.run()
        result = s.finish()
        print(table(s, result))
    finally:
        s.cleanup()


if __name__ == "__main__":
    main()
