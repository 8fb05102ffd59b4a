"""Let teardown run when a process is told to stop (SIGTERM, SIGHUP) as it runs on Ctrl-C.

Python ends a process on SIGTERM without running ``finally`` blocks, ``with`` exits or
``atexit`` hooks, so a benchmark stopped by ``timeout`` (or systemd, or ``kill``) leaves
behind whatever it built outside itself: lab namespaces, a delay-line process, a state file,
a private influxd, temporary directories. SIGINT already raises ``KeyboardInterrupt``.

``exit_on_signals()`` makes SIGTERM and SIGHUP raise :class:`Terminated` (a ``SystemExit``
with the shell's code, 128 + signal number) in the main thread while it is active, so every
cleanup path runs. ``deferred_signals()`` holds SIGTERM, SIGINT and SIGHUP off while a
teardown itself runs and delivers them once it is done, so a second signal cannot cut a
teardown in half. Both leave a handler someone else installed alone (only the default
disposition is replaced) and do nothing outside the main thread, where Python cannot set
handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

#: Signals that end a process politely and that a cleanup path should answer.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM/SIGHUP; the exit code is 128 + the signal."""

    def __init__(self, signo: int):
        super().__init__(128 + signo)
        self.signo = signo
        self.signame = signal.Signals(signo).name


def _raise(signo: int, _frame: FrameType | None) -> None:
    raise Terminated(signo)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_held = 0
_saved: dict[int, Any] = {}


def hold() -> None:
    """Start answering SIGTERM/SIGHUP with :class:`Terminated` (reference-counted; see
    ``release``). For objects whose lifetime is not one ``with`` block (``Lab.up``)."""
    global _held
    if not _main_thread():
        return
    if _held == 0:
        _saved.clear()
        for s in STOP_SIGNALS:
            cur = signal.getsignal(s)
            if cur in (signal.SIG_DFL, None):  # never override someone's own handler
                _saved[s] = cur
                signal.signal(s, _raise)
    _held += 1


def release() -> None:
    """Undo one ``hold``; the last one restores the default dispositions."""
    global _held
    if not _main_thread() or _held == 0:
        return
    _held -= 1
    if _held == 0:
        for s, prev in _saved.items():
            if signal.getsignal(s) is _raise:
                signal.signal(s, prev if prev is not None else signal.SIG_DFL)
        _saved.clear()


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """``with exit_on_signals(): main()`` — SIGTERM/SIGHUP raise ``Terminated`` inside."""
    hold()
    try:
        yield
    finally:
        release()


@contextlib.contextmanager
def deferred_signals(
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
) -> Iterator[None]:
    """Hold ``signals`` off while the block runs; then deliver each one that came, once."""
    if not _main_thread():
        yield
        return
    got: list[int] = []

    def note(signo: int, _frame: FrameType | None) -> None:
        got.append(signo)

    prev: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
    for s in signals:
        prev[s] = signal.getsignal(s)
        signal.signal(s, note)
    try:
        yield
    finally:
        for s, h in prev.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        for s in dict.fromkeys(got):
            signal.raise_signal(s)  # now under the handler that was there before
