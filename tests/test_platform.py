"""netready/platform.py: every Linux-only call has a fallback, and every fallback runs here.

On Linux the probe must find every capability (a probe that wrongly turns one off would send
the agent down a worse path for no reason); then each capability is forced off
(``NETREADY_PLATFORM_OFF``, in this process or in a subprocess's environment) and the code that
uses it must still work: the agent stops on SIGTERM without ``loop.add_signal_handler``, names
its host without ``os.uname``, locks its spool without ``flock``; receive times come from the
event loop without ``SO_TIMESTAMPNS``; a socket that cannot be DSCP-marked is not.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from netready import platform
from netready.errors import ConfigError, SpoolLocked
from netready.spool import Spool

ROOT = Path(__file__).resolve().parent.parent
ForceOff = Callable[..., None]


@pytest.fixture
def force_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForceOff]:
    """``force_off("tcp_info", ...)``: those capabilities are off in this process until the
    test ends (then ``caps()`` probes again)."""

    def off(*names: str) -> None:
        monkeypatch.setenv(platform.OFF_ENV, ",".join(names))
        platform.caps.cache_clear()

    yield off
    platform.caps.cache_clear()


def test_linux_has_every_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platform.OFF_ENV, raising=False)
    platform.caps.cache_clear()
    try:
        assert platform.caps().missing() == []
    finally:
        platform.caps.cache_clear()


def test_forcing_off(force_off: ForceOff) -> None:
    force_off("tcp_info", " uname ")
    assert sorted(platform.caps().missing()) == ["tcp_info", "uname"]
    force_off("tcp_infos")
    with pytest.raises(ConfigError, match=r"NETREADY_PLATFORM_OFF: unknown capability tcp_infos"):
        platform.caps()


def test_bad_capability_name_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, platform.OFF_ENV: "nonsense"}
    cp = subprocess.run(
        ["netready-agent", "--inventory", str(_inventory(tmp_path)), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert cp.returncode == 2, cp.stderr
    assert "unknown capability nonsense" in cp.stderr and "Traceback" not in cp.stderr


# ---------------------------------------------------------------------------- the agent


def _inventory(tmp_path: Path, count: int = 3) -> Path:
    """One site, embedded store, one icmp target on loopback (raw socket: tests run as root)."""
    inv = {
        "version": 1,
        "store": {"kind": "embedded"},
        "agent": {"spool_path": str(tmp_path / "spool.db"), "splay_s": 0},
        "sites": [
            {
                "ods": "Y81001",
                "name": "Riverside Surgery",
                "type": "gp_practice",
                "icb": "QHM",
                "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
                "targets": [
                    {
                        "name": "lo",
                        "probe": "icmp",
                        "address": "127.0.0.1",
                        "params": {"count": count, "interval_s": 0.05, "timeout_s": 1},
                    }
                ],
            }
        ],
    }
    p = tmp_path / "inv.yaml"
    p.write_text(yaml.safe_dump(inv))
    return p


def _env(*off: str) -> dict[str, str]:
    return {**os.environ, platform.OFF_ENV: ",".join(off)}


def test_agent_without_signal_handlers_uname_or_flock(tmp_path: Path) -> None:
    """The agent as it would run on Windows, as far as Linux can show it: SIGTERM handled
    through ``signal.signal``, host name from ``gethostname``, spool lock by SQLite (a second
    writer refused while it runs, the lock free once it is gone)."""
    inv = _inventory(tmp_path, count=100_000)  # a probe that outlasts the test
    env = _env("signal_handlers", "uname", "flock")
    cmd = ["netready-agent", "--inventory", str(inv), "--state-dir", str(tmp_path / "st")]
    p = subprocess.Popen([*cmd, "--log-format", "text"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = p.stderr.readline()  # type: ignore[union-attr]
        assert "forced off: flock, signal_handlers, uname" in first
        assert "starting" in p.stderr.readline()  # type: ignore[union-attr]
        second = subprocess.run(
            ["netready", "ship", "--inventory", str(inv)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert second.returncode == 1 and "is in use by another agent" in second.stderr
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "agent stopped" in err and "Traceback" not in err
    _inventory(tmp_path, count=3)  # the same spool, a short probe
    once = subprocess.run([*cmd, "--once"], capture_output=True, text=True, env=env, timeout=60)
    assert once.returncode == 0, once.stderr
    with Spool(tmp_path / "spool.db", ship=False, embedded=True, readonly=True) as sp:
        rows = sp._con.execute(  # type: ignore[union-attr]
            "SELECT tags FROM points WHERE measurement = 'agent'"
        ).fetchall()
    hosts = {json.loads(t)["host"] for (t,) in rows}
    assert hosts == {socket.gethostname()}


def test_sqlite_spool_lock_in_process_and_after_a_kill(tmp_path: Path, force_off: ForceOff) -> None:
    force_off("flock")
    path = tmp_path / "spool.db"
    first = Spool(path, exclusive=True)
    with pytest.raises(SpoolLocked, match="one writer per spool"):
        Spool(path, exclusive=True)
    first.close()
    Spool(path, exclusive=True).close()  # free again once closed
    # A holder killed outright leaves no stale lock: the OS drops SQLite's lock with it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from netready.spool import Spool; "
            f"s = Spool({str(path)!r}, exclusive=True); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env("flock"),
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        with pytest.raises(SpoolLocked):
            Spool(path, exclusive=True)
    finally:
        holder.kill()
        holder.wait()
    Spool(path, exclusive=True).close()


def test_stop_signal_fallback_in_process(force_off: ForceOff) -> None:
    """``on_stop_signals`` without ``add_signal_handler``: the callback runs in the loop, and
    the previous handler is back after ``undo``."""
    import asyncio

    force_off("signal_handlers")
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> bool:
        stop = asyncio.Event()
        undo = platform.on_stop_signals(asyncio.get_running_loop(), stop.set)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 30)
            return stop.is_set()
        finally:
            undo()

    assert asyncio.run(main())
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------- sockets


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    return rx, tx


@pytest.mark.parametrize("off", [(), ("rx_timestamps",), ("rx_timestamps", "recvmsg")])
def test_receive_time_kernel_or_read_time(force_off: ForceOff, off: tuple[str, ...]) -> None:
    """With SO_TIMESTAMPNS the receive time is when the datagram arrived, even if it is read
    0.2 s later; without it (or without recvmsg) it is when it was read."""
    force_off(*off)
    rx, tx = _udp_pair()
    with rx, tx:
        stamped = platform.enable_rx_timestamps(rx)
        assert stamped is (not off)
        offset = time.time_ns() - time.monotonic_ns()
        sent = time.monotonic_ns()
        tx.send(b"x")
        time.sleep(0.2)
        read_at = time.monotonic_ns()
        data, anc, _flags, addr = platform.recv_ancillary(rx, 64, 256)
        assert data == b"x" and addr == tx.getsockname()
        t = platform.monotonic_rx_ns(anc, offset)
    if stamped:
        assert platform.kernel_timestamp_ns(anc) is not None
        assert t < read_at - 100_000_000  # arrival, well before the read
        assert t >= sent - 5_000_000  # (clock offset taken once: a few ms of slack)
    else:
        assert anc == [] or platform.kernel_timestamp_ns(anc) is None
        assert t >= read_at


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_dscp_marked_or_not(force_off: ForceOff, family: int) -> None:
    level, opt = (
        (socket.IPPROTO_IPV6, socket.IPV6_TCLASS)
        if family == socket.AF_INET6
        else (socket.IPPROTO_IP, socket.IP_TOS)
    )
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        assert platform.mark_dscp(s, family, 46)
        assert s.getsockopt(level, opt) == 46 << 2
    force_off("dscp_mark")
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        assert not platform.mark_dscp(s, family, 46)
        assert s.getsockopt(level, opt) == 0


def test_tcp_info_or_none(force_off: ForceOff) -> None:
    """The throughput wire's TCP_INFO reader (probe and speed endpoint) honours the
    capability: off, both fall back to counting bytes themselves."""
    from netready.probes.throughput import wire

    srv = socket.create_server(("127.0.0.1", 0))
    with srv, socket.create_connection(srv.getsockname()) as c:
        conn, _ = srv.accept()
        with conn:
            c.sendall(b"x" * 10_000)
            assert conn.recv(1) == b"x"
            info = wire.tcp_info(c)
            assert info is not None and info["snd_mss"] > 0 and info["bytes_acked"] >= 1
            force_off("tcp_info")
            assert wire.tcp_info(c) is None
    assert wire.tcp_info(None) is None


def test_open_files_limit(force_off: ForceOff) -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert platform.open_files_limit() == (None if soft == resource.RLIM_INFINITY else soft)
    force_off("rlimit")
    assert platform.open_files_limit() is None


def test_hostname(force_off: ForceOff) -> None:
    assert platform.hostname() == os.uname().nodename
    force_off("uname")
    assert platform.hostname() == socket.gethostname()


# ---------------------------------------------------------------------------- the probes


def test_icmp_probe_without_recvmsg_timestamps_or_dscp(force_off: ForceOff) -> None:
    """The icmp probe as on a system with none of them: recvfrom, the loop's read time,
    unmarked packets; it still measures every reply (raw socket: tests run as root)."""
    import asyncio

    from netready.probes import icmp

    from netready.plugin import Context

    force_off("recvmsg", "rx_timestamps", "dscp_mark")
    spec = icmp.Spec(target="127.0.0.1", count=100, interval_s=0.005, timeout_s=1, dscp=46)
    (rec,) = asyncio.run(icmp.run(Context(), spec))
    assert rec.ok and rec.fields["received"] == 100, rec.fields
    # replies are read as they come, not after the 0.5 s of sending (the loop yields)
    assert 0 < rec.fields["rtt_min_ms"] <= rec.fields["rtt_max_ms"] < 250


def _reflector(*off: str) -> tuple[subprocess.Popen[str], int]:
    """``netready reflector`` on a free loopback port, with capabilities ``off``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    refl = subprocess.Popen(
        [sys.executable, "-m", "netready.cli", "reflector", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(*off),
    )
    return refl, port


def test_rtt_probe_without_dscp_marking(force_off: ForceOff, tmp_path: Path) -> None:
    import asyncio

    from netready.probes import rtt

    from netready.plugin import Context

    refl, port = _reflector()
    try:
        refl.stderr.readline()  # type: ignore[union-attr]  # listening
        force_off("dscp_mark")
        spec = rtt.Spec(target=f"127.0.0.1:{port}", duration_s=1, rate_pps=50, dscp=46)
        recs = asyncio.run(rtt.run(Context(), spec))
    finally:
        refl.terminate()
        refl.wait(10)
    assert sum(r.fields["received"] for r in recs) == 50, [r.fields for r in recs]


def test_run_is_a_selector_loop_with_readers() -> None:
    """The agent's loop (``platform.run``) has ``add_reader`` on every OS."""
    import asyncio

    async def main() -> tuple[str, bytes]:
        loop = asyncio.get_running_loop()
        rx, tx = _udp_pair()
        got: asyncio.Future[bytes] = loop.create_future()
        loop.add_reader(rx.fileno(), lambda: got.done() or got.set_result(rx.recv(16)))
        tx.send(b"ping")
        try:
            return type(loop).__name__, await asyncio.wait_for(got, 10)
        finally:
            loop.remove_reader(rx.fileno())
            rx.close()
            tx.close()

    name, data = platform.run(main())
    assert data == b"ping" and "Selector" in name


def test_reflector_without_recvmsg_or_signal_handlers(tmp_path: Path) -> None:
    """The reflector as on Windows: recvfrom (no received TTL: it reflects TTL 0), stopped
    by SIGTERM through signal.signal; the rtt probe measures against it."""
    import asyncio

    from netready.probes import rtt

    from netready.plugin import Context

    refl, port = _reflector("recvmsg", "signal_handlers")
    try:
        assert "forced off: recvmsg, signal_handlers" in refl.stderr.readline()  # type: ignore[union-attr]
        assert "listening" in refl.stderr.readline()  # type: ignore[union-attr]
        spec = rtt.Spec(target=f"127.0.0.1:{port}", duration_s=1, rate_pps=50)
        recs = asyncio.run(rtt.run(Context(), spec))
        refl.send_signal(signal.SIGTERM)
        _, err = refl.communicate(timeout=30)
    finally:
        if refl.poll() is None:
            refl.kill()
            refl.wait()
    assert sum(r.fields["received"] for r in recs) == 50, [r.fields for r in recs]
    assert refl.returncode == 0 and "Traceback" not in err


def test_speed_endpoint_cap_without_rlimit(force_off: ForceOff) -> None:
    from netready.servers import speed

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        assert speed.total_connection_cap() == max(
            16, soft - speed.FD_RESERVE - speed.ACCEPT_BACKLOG
        )
    force_off("rlimit")
    assert speed.total_connection_cap() == 1 << 30  # no limit known: none imposed here
