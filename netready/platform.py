"""What this operating system lets netready do, probed once, and a fallback for each thing
it does not: the one place that knows which calls are Linux-only (docs/windows.md).

Each capability is a field of ``Capabilities`` (``caps()`` probes them on first use and keeps
the answer); code never tests ``sys.platform`` or ``hasattr(socket, ...)`` itself, it calls the
helper here, which takes the fallback when the capability is missing:

=================  ==============================  =============================================
capability         Linux call                      fallback
=================  ==============================  =============================================
signal_handlers    ``loop.add_signal_handler``     ``signal.signal`` + ``call_soon_threadsafe``
                                                   (Windows' event loop has no signal handlers)
uname              ``os.uname().nodename``         ``socket.gethostname()``
rx_timestamps      ``recvmsg`` + ``SO_TIMESTAMPNS``  the time the event loop read the packet
                   (kernel receive time)           (``recv_timestamped`` says which it was)
recvmsg            ``socket.recvmsg``              ``recvfrom``: no ancillary data
dscp_mark          ``IP_TOS`` / ``IPV6_TCLASS``    none: packets leave unmarked and DSCP results
                                                   are "not measurable here" (Windows ignores
                                                   IP_TOS from applications)
dscp_read          ``IP_RECVTOS`` / ``RECVTCLASS``  none: "not measurable here"
tcp_info           ``TCP_INFO`` (Linux layout;     ``None``: the caller counts bytes itself
                   decoded in probes/throughput/
                   wire.py)
flock              ``fcntl.flock`` on a lock file  an exclusive SQLite transaction held on the
                                                   lock file (SQLite locks on every OS)
rlimit             ``resource.getrlimit``          ``None`` (no limit known)
=================  ==============================  =============================================

``run`` runs the agent's event loop as a selector loop everywhere (``loop.add_reader``, which
the probes use, is missing from Windows' default proactor loop).

Forcing a capability off (tests run every fallback on Linux this way; also a way to check a
suspected platform problem): ``NETREADY_PLATFORM_OFF=tcp_info,signal_handlers`` in the
environment, read when ``caps()`` first probes (``caps.cache_clear()`` probes again). An
unknown name there is an error, so a typo does not silently test nothing.

ICMP without privilege is not a capability probed here: whether a raw or a datagram ICMP
socket may be opened depends on the user and the sysctl, so the icmp probe tries them when it
runs (``probes/icmp``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from netready.errors import ConfigError

log = logging.getLogger("netready.platform")
T = TypeVar("T")

#: The environment variable that forces capabilities off (comma-separated names).
OFF_ENV = "NETREADY_PLATFORM_OFF"
#: What DSCP fields say where DSCP cannot be set or read.
NOT_MEASURABLE = "not measurable here"

# Linux values, used only when ``caps()`` said the call exists (Python names some of them only
# on some versions).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


@dataclass(frozen=True)
class Capabilities:
    """What this OS and Python offer (module docstring: the fallback of each)."""

    signal_handlers: bool
    uname: bool
    rx_timestamps: bool
    recvmsg: bool
    dscp_mark: bool
    dscp_read: bool
    tcp_info: bool
    flock: bool
    rlimit: bool

    def missing(self) -> list[str]:
        """The capabilities this OS lacks (or that were forced off)."""
        return [f.name for f in fields(self) if not getattr(self, f.name)]


NAMES = tuple(f.name for f in fields(Capabilities))


def _probe_socket_option(level: int, name: int, value: int = 1) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(level, name, value)
            return bool(s.getsockopt(level, name) == value)
    except (OSError, AttributeError):
        return False


def _probe() -> Capabilities:
    linux = sys.platform.startswith("linux")
    windows = sys.platform == "win32"
    has_recvmsg = hasattr(socket.socket, "recvmsg")
    try:
        import fcntl

        flock = hasattr(fcntl, "flock")
    except ImportError:
        flock = False
    try:
        import resource

        rlimit = hasattr(resource, "getrlimit")
    except ImportError:
        rlimit = False
    return Capabilities(
        # Only the Unix selector loops have add_signal_handler (asyncio docs, "Platform
        # Support"); Windows' proactor raises NotImplementedError.
        signal_handlers=not windows and hasattr(asyncio.AbstractEventLoop, "add_signal_handler"),
        uname=hasattr(os, "uname"),
        rx_timestamps=linux and has_recvmsg and _probe_socket_option(socket.SOL_SOCKET, SO_TIMESTAMPNS),
        recvmsg=has_recvmsg,
        dscp_mark=not windows and hasattr(socket, "IP_TOS")
        and _probe_socket_option(socket.IPPROTO_IP, socket.IP_TOS, 0xB8),
        dscp_read=has_recvmsg and not windows and hasattr(socket, "IP_RECVTOS")
        and _probe_socket_option(socket.IPPROTO_IP, socket.IP_RECVTOS),
        tcp_info=linux and hasattr(socket, "TCP_INFO"),
        flock=flock,
        rlimit=rlimit,
    )  # fmt: skip


def forced_off(env: str | None = None) -> set[str]:
    """The capability names ``NETREADY_PLATFORM_OFF`` forces off; a ``ConfigError`` (one
    line, exit 2) naming an unknown one."""
    raw = os.environ.get(OFF_ENV, "") if env is None else env
    names = {n.strip() for n in raw.split(",") if n.strip()}
    bad = sorted(names - set(NAMES))
    if bad:
        raise ConfigError(
            f"{OFF_ENV}: unknown capability {', '.join(bad)} (known: {', '.join(NAMES)})"
        )
    return names


@functools.cache
def caps() -> Capabilities:
    """This OS's capabilities, probed once, less those forced off (module docstring)."""
    found = _probe()
    off = forced_off()
    if off:
        found = replace(found, **dict.fromkeys(off, False))
        log.info("platform capabilities forced off: %s", ", ".join(sorted(off)))
    return found


# ---------------------------------------------------------------------------- signals


def on_stop_signals(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], Any]
) -> Callable[[], None]:
    """Call ``callback`` in ``loop`` on SIGTERM or SIGINT (and SIGBREAK, Ctrl-Break, where
    it exists). Returns a function that restores the previous handling.

    With ``loop.add_signal_handler`` where the loop has it; otherwise (Windows) through
    ``signal.signal``: the handler runs in the main thread between bytecodes and hands the
    callback to the loop with ``call_soon_threadsafe``, which also wakes a loop that is
    waiting in ``select``. Once the loop has closed, the next such signal restores the
    previous handling and is handled by it."""
    sigs = [signal.SIGTERM, signal.SIGINT]
    if hasattr(signal, "SIGBREAK"):
        sigs.append(signal.SIGBREAK)
    if caps().signal_handlers:
        for sig in sigs:
            loop.add_signal_handler(sig, callback)

        def undo_loop() -> None:
            for sig in sigs:
                loop.remove_signal_handler(sig)

        return undo_loop

    def handler(signum: int, frame: object) -> None:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop has closed: handle it as before us
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)

    previous: dict[int, Any] = {sig: signal.signal(sig, handler) for sig in sigs}

    def undo_signal() -> None:
        for sig, prev in previous.items():
            signal.signal(sig, prev)

    return undo_signal


# ---------------------------------------------------------------------------- event loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a selector event loop on every OS. The probes and servers
    watch their own sockets with ``loop.add_reader``, which Windows' default (proactor) loop
    does not have; its selector loop has it (``select``, up to 512 sockets) but cannot run
    subprocesses (the iperf3 probe). Elsewhere the default loop is a selector loop:
    ``asyncio.run`` as it is."""
    if sys.platform != "win32":  # the default loop is a selector loop already
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:  # pragma: no cover
        return runner.run(main)


# ---------------------------------------------------------------------------- host


def hostname() -> str:
    """This machine's name: ``os.uname().nodename``, else ``socket.gethostname()``."""
    if caps().uname:
        return os.uname().nodename
    return socket.gethostname()


# ---------------------------------------------------------------------------- receive times


def enable_rx_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to timestamp each datagram ``sock`` receives (``SO_TIMESTAMPNS``).
    False where it cannot: ``recv_timestamped`` then stamps the time it read the packet."""
    if not caps().rx_timestamps:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def recv_ancillary(
    sock: socket.socket, bufsize: int, ancbufsize: int
) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
    """``(data, ancillary, flags, address)`` as ``recvmsg`` gives them where it exists; else
    ``recvfrom`` with no ancillary data (no kernel timestamp, received TOS or TTL) and flags
    0. Raises what they raise (``BlockingIOError`` on a non-blocking socket with nothing to
    read)."""
    if caps().recvmsg:
        return sock.recvmsg(bufsize, ancbufsize)
    data, addr = sock.recvfrom(bufsize)
    return data, [], 0, addr


def kernel_timestamp_ns(anc: list[tuple[int, int, bytes]]) -> int | None:
    """The ``SO_TIMESTAMPNS`` receive time (wall clock, ns) in ``anc``, or ``None``."""
    for level, typ, cd in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(cd) >= 16:
            sec, nsec = struct.unpack("qq", cd[:16])
            return int(sec * 1_000_000_000 + nsec)
    return None


def monotonic_rx_ns(anc: list[tuple[int, int, bytes]], offset_ns: int) -> int:
    """The receive time of a datagram on the monotonic clock: the kernel's timestamp in
    ``anc`` shifted by ``offset_ns`` (``time.time_ns() - time.monotonic_ns()``, taken once),
    or now where there is none or it is more than a second off (a clock step)."""
    now = time.monotonic_ns()
    k = kernel_timestamp_ns(anc)
    if k is None or abs(now - (k - offset_ns)) > 1_000_000_000:
        return now
    return k - offset_ns


# ---------------------------------------------------------------------------- DSCP


def mark_dscp(sock: socket.socket, family: int, dscp: int) -> bool:
    """Mark what ``sock`` sends with ``dscp`` (IP_TOS or IPV6_TCLASS). False where packets
    cannot be marked (they leave with DSCP 0; the caller reports DSCP as not measurable)."""
    if not caps().dscp_mark:
        return False
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
    except OSError as e:
        log.warning("DSCP %d cannot be set on this socket: %s", dscp, e)
        return False
    return True


# ---------------------------------------------------------------------------- limits


def open_files_limit() -> int | None:
    """The soft limit on open files, ``None`` where unlimited or unknown (no ``resource``)."""
    if not caps().rlimit:
        return None
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


# ---------------------------------------------------------------------------- file lock


class FileLock:
    """An exclusive lock on ``path`` held until ``release()`` or the process ends (the OS drops
    it with the process, so a killed holder never leaves a stale lock).

    ``fcntl.flock`` where it exists; elsewhere an exclusive SQLite transaction on the lock
    file, which SQLite implements with each OS's own file locks (LockFileEx on Windows).
    ``acquire`` returns False when another process (or another ``FileLock`` here) holds it;
    ``holder`` then is the pid it wrote, where it could be read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.holder: str | None = None
        self._fd: int | None = None
        self._con: sqlite3.Connection | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting. ``OSError`` if the file cannot be opened."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if caps().flock:
            return self._flock()
        return self._sqlite()

    def _flock(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.holder = os.read(fd, 32).decode(errors="replace").strip() or None
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def _sqlite(self) -> bool:
        try:
            con = sqlite3.connect(str(self.path), timeout=0, isolation_level=None)
        except sqlite3.Error as e:
            raise OSError(f"{self.path}: {e}") from None
        try:
            con.execute("PRAGMA journal_mode=DELETE")
            con.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            con.close()
            self.holder = None  # the pid is inside the locked file: unreadable
            return False
        except sqlite3.DatabaseError as e:  # not a database: a flock-era lock file
            con.close()
            raise OSError(f"{self.path} is not a lock file netready can use: {e}") from None
        con.execute("CREATE TABLE IF NOT EXISTS holder (pid INTEGER)")
        con.execute("DELETE FROM holder")
        con.execute("INSERT INTO holder VALUES (?)", (os.getpid(),))
        self._con = con
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
        if self._con is not None:
            try:
                self._con.rollback()
            finally:
                self._con.close()
                self._con = None


__all__ = [
    "NOT_MEASURABLE",
    "OFF_ENV",
    "Capabilities",
    "FileLock",
    "caps",
    "enable_rx_timestamps",
    "forced_off",
    "hostname",
    "kernel_timestamp_ns",
    "mark_dscp",
    "monotonic_rx_ns",
    "on_stop_signals",
    "open_files_limit",
    "recv_ancillary",
    "run",
]
