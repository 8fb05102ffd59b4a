"""The site agent on a bad day, against real parts: a full disk (a 16 MB tmpfs), a corrupt spool
file, a second writer on the same spool, failures and their journald priorities.

Every agent here is the real ``netready-agent`` process, shipping to the session's real
InfluxDB 1.6 and measuring a real reflector on loopback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faults import fill, mount_tmpfs, outbox_leaf_pages, overwrite_pages, unmount
from influxd import Influxd
from test_agent import agent, inventory, reflector_addr, udp_port

from netready.records import Record, now_ms
from netready.spool import Spool

__all__ = ["reflector_addr"]  # a fixture, used by name


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` s (a bound, not a goal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def log_lines(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def count(influxd: Influxd, db: str, q: str) -> int:
    res = influxd.query(q, db)["results"][0]
    return int(res["series"][0]["values"][0][1]) if "series" in res else 0


def one_value(influxd: Influxd, db: str, q: str) -> object:
    res = influxd.query(q, db)["results"][0]
    return res["series"][0]["values"][0][1] if "series" in res else None


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs to put the spool on, so the test can fill its disk. Always unmounted."""
    mnt = tmp_path / "disk"
    mount_tmpfs(mnt)
    try:
        yield mnt
    finally:
        unmount(mnt)


def influx_inventory(
    tmp_path: Path, influxdb: tuple[str, str], reflector: str, **kw: object
) -> Path:
    """An inventory shipping to the test's InfluxDB database, rtt of 1 s against ``reflector``."""
    url, db = influxdb
    store = {"kind": "influxdb_v1", "url": url, "database": db}
    return inventory(tmp_path, store, reflector, 1, **kw)


def start_agent(inv: Path, log: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    with open(log, "w") as fh:
        return subprocess.Popen(
            [
                "netready-agent",
                *("--inventory", str(inv), "--state-dir", str(inv.parent / "state")),
                *args,
            ],
            stderr=fh,
            env=env,
        )


def stop_agent(p: subprocess.Popen[bytes]) -> int:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise
    return int(p.returncode)


def test_full_disk_then_freed_shipping_resumes_nothing_lost(
    influxd: Influxd,
    influxdb: tuple[str, str],
    reflector_addr: str,
    tmp_path: Path,
    tmpfs: Path,
) -> None:
    """The spool's disk fills while the agent runs, then frees: records made meanwhile are held
    in memory with a WARNING, committed when space returns and shipped; the ship loop restarts by
    itself; every WARNING/ERROR says why; no unretrieved task exception; SIGTERM exits 0."""
    inv = influx_inventory(
        tmp_path, influxdb, reflector_addr, interval_s=1, spool=tmpfs / "spool.db", self_report_s=1
    )
    db = influxdb[1]
    log = tmp_path / "agent.log"
    p = start_agent(inv, log)
    try:
        wait_for(lambda: count(influxd, db, 'SELECT count("sent") FROM rtt') >= 2, 60, "shipping")
        t_full = now_ms()
        filler = fill(tmpfs)

        def held(n: int) -> bool:
            return any(
                x["level"] == "warning" and int(x.get("held", 0)) >= n  # type: ignore[call-overload]
                for x in log_lines(log)
            )

        # one rtt and one agent record a second: some seconds' worth held in memory
        wait_for(lambda: held(8), 60, "a WARNING that records are held in memory")
        filler.unlink()
        t_free = now_ms()
        during = f'SELECT count("sent") FROM rtt WHERE time >= {t_full}ms AND time <= {t_free}ms'
        wait_for(lambda: count(influxd, db, during) >= 2, 90, "records made on the full disk")
        wait_for(
            lambda: (one_value(influxd, db, "SELECT max(held_records) FROM agent") or 0) >= 1,  # type: ignore[operator]
            60,
            "an agent record reporting the held records",
        )
        landed_after = count(influxd, db, 'SELECT count("sent") FROM rtt')
        wait_for(
            lambda: count(influxd, db, 'SELECT count("sent") FROM rtt') > landed_after + 2,
            60,
            "shipping to go on after the disk was freed",
        )
    finally:
        rc = stop_agent(p)
    assert rc == 0
    text = log.read_text()
    assert "Task exception was never retrieved" not in text and "Traceback" not in text
    lines = log_lines(log)
    assert any(x["level"] == "warning" and "no space left" in str(x["msg"]) for x in lines)
    for x in lines:
        if x["level"] in ("warning", "error"):
            assert x.get("reason"), f"no reason in {x}"
    ship = subprocess.run(["netready", "ship", "--inventory", str(inv)], capture_output=True)
    assert ship.returncode == 0, ship.stderr
    with Spool(tmpfs / "spool.db", readonly=True) as sp:
        st = sp.stats()
    assert st.enqueued == st.shipped and (st.pending, st.dead_lettered, st.dropped) == (0, 0, 0)
    # nothing lost: every rtt run the agent logged (one record each) is in InfluxDB
    runs = sum(1 for x in lines if x.get("task") == "probe:rtt:core" and x.get("records") == 1)
    assert count(influxd, db, 'SELECT count("sent") FROM rtt') == runs


def corrupt(path: Path, how: str) -> None:
    """Damage a spool file as a power cut or a failing SD card would."""
    if how == "not_a_database":
        path.write_bytes(os.urandom(64 * 1024))
        return
    pages, size = outbox_leaf_pages(path)
    overwrite_pages(path, pages[len(pages) // 3 : len(pages) // 3 + 4], size)


def spool_with_rows(path: Path, n: int = 3000) -> None:
    with Spool(path) as sp:
        for i in range(0, n, 500):
            sp.enqueue(
                Record(
                    "old", {"site": "Y81001"}, {"seq": j, "pad": "x" * 200}, 1_700_000_000_000 + j
                )
                for j in range(i, i + 500)
            )
        sp.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize("how", ["not_a_database", "malformed"])
def test_once_quarantines_a_corrupt_spool_then_runs_clean(
    influxd: Influxd,
    influxdb: tuple[str, str],
    reflector_addr: str,
    tmp_path: Path,
    how: str,
) -> None:
    """A corrupt spool is moved aside (timestamped), a fresh one records and ships this run's
    measurements, an ERROR is logged, the count is kept in the fresh spool, and ``--once``
    exits 1; the next run exits 0 (no crash loop)."""
    db = influxdb[1]
    spool = tmp_path / "spool.db"
    spool_with_rows(spool)
    corrupt(spool, how)
    damaged = spool.read_bytes()
    inv = influx_inventory(tmp_path, influxdb, reflector_addr)
    r = agent(inv, "--once")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [json.loads(x) for x in r.stderr.splitlines() if '"level": "error"' in x]
    assert any(
        "is corrupt" in str(e["msg"]) and "moved to spool.db.corrupt-" in str(e["msg"])
        for e in errors
    )
    (moved,) = tmp_path.glob("spool.db.corrupt-*[0-9]Z")
    assert re.fullmatch(r"spool\.db\.corrupt-\d{8}T\d{6}Z", moved.name)
    assert moved.read_bytes() == damaged  # kept as it was, for a post-mortem
    assert count(influxd, db, 'SELECT count("sent") FROM rtt') == 1  # this run's record landed
    assert one_value(influxd, db, "SELECT last(spool_quarantined) FROM agent") == 1
    r2 = agent(inv, "--once")
    assert r2.returncode == 0, r2.stderr
    with Spool(spool, readonly=True) as sp:
        st = sp.stats()
    assert (st.quarantined, st.pending) == (1, 0)
    assert count(influxd, db, 'SELECT count("sent") FROM rtt') == 2
    assert len(list(tmp_path.glob("spool.db.corrupt-*"))) == 1


def test_one_writer_per_spool(
    influxd: Influxd, influxdb: tuple[str, str], reflector_addr: str, tmp_path: Path
) -> None:
    """While an agent runs, a second agent and `netready ship` on the same spool refuse with one
    line naming the spool and the holder; `netready spool stats` (read-only) still works."""
    inv = influx_inventory(tmp_path, influxdb, reflector_addr, interval_s=2)
    log = tmp_path / "agent.log"
    p = start_agent(inv, log)
    try:
        wait_for(lambda: "starting" in log.read_text(), 30, "the agent to start")
        second = agent(inv, "--once")
        ship = subprocess.run(
            ["netready", "ship", "--inventory", str(inv)], capture_output=True, text=True
        )
        stats = subprocess.run(
            ["netready", "spool", "stats", "--inventory", str(inv), "--format", "json"],
            capture_output=True,
            text=True,
        )
    finally:
        assert stop_agent(p) == 0
    for r in (second, ship):
        assert r.returncode == 1, r.stderr
        (line,) = [x for x in r.stderr.splitlines() if "in use" in x]
        assert f"spool {tmp_path / 'spool.db'} is in use by another agent" in line
        assert f"(pid {p.pid})" in line and "Traceback" not in r.stderr
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["path"] == str(tmp_path / "spool.db")
    # once the agent is gone, ship takes the spool
    ship = subprocess.run(
        ["netready", "ship", "--inventory", str(inv)], capture_output=True, text=True, timeout=60
    )
    assert ship.returncode == 0, ship.stderr


def test_failures_are_warnings_with_reasons_and_journald_priorities(tmp_path: Path) -> None:
    """A probe that fails (no reflector) is a WARNING with its reason. When stderr is the stream
    systemd announced in JOURNAL_STREAM (device:inode), each line starts with the ``<N>``
    syslog priority journald files it under (sd-daemon(3): 4 warning, 6 info), in JSON with a
    matching ``priority`` key and in text; on any other stderr no prefix is written."""
    inv = inventory(tmp_path, {"kind": "embedded"}, f"127.0.0.1:{udp_port()}", duration=0.5)
    base = [
        "netready-agent",
        "--inventory",
        str(inv),
        "--state-dir",
        str(tmp_path / "st"),
        "--once",
    ]

    def run(*args: str, journal: bool) -> list[str]:
        r, w = os.pipe()
        st = os.fstat(w)
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        p = subprocess.Popen([*base, *args], stderr=w, env=env)
        os.close(w)
        with os.fdopen(r) as fh:
            out = fh.read()
        assert p.wait(60) == 0, out
        return out.splitlines()

    lines = run(journal=True)
    parsed = []
    for line in lines:
        m = re.fullmatch(r"<([0-7])>(\{.*\})", line)
        assert m, f"no journald prefix: {line!r}"
        rec = json.loads(m.group(2))
        assert rec["priority"] == int(m.group(1))
        parsed.append(rec)
    (warn,) = [x for x in parsed if x.get("task") == "probe:rtt:core"]
    assert warn["level"] == "warning" and warn["priority"] == 4
    assert warn["result"] in ("timeout", "refused", "unreachable") and warn["reason"]
    assert all(x["priority"] == 6 for x in parsed if x["level"] == "info")
    text = run("--log-format", "text", journal=True)
    assert any(
        re.match(r"<4>\S+ \S+ WARNING netready\.agent: task probe:rtt:core failed: \w+: .+", x)
        for x in text
    )
    plain = run(journal=False)
    assert plain and all(x.startswith("{") for x in plain)


def test_agent_without_site_exits_2(tmp_path: Path) -> None:
    """`--site ${NETREADY_SITE}` with the variable unset is `--site ''`: exit 2, which the unit's
    RestartPreventExitStatus=2 keeps from restarting every 30 s."""
    inv = inventory(tmp_path, {"kind": "embedded"}, "127.0.0.1:9")
    r = agent(inv, "--site", "", "--once")
    assert r.returncode == 2 and "Traceback" not in r.stderr
