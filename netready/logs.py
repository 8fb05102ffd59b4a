"""Logging for every netready process: the site agent and the central servers.

``setup(fmt, level)`` sends the root logger to stderr, one line per record:

- ``json`` (the agent's default): one JSON object per line -- ``ts``, ``level``, ``priority``
  (the syslog number below), ``logger``, ``msg`` and the structured extras in ``EXTRA``
  (``site``, ``task``, ``result``, ``reason``, ...).
- ``text``: ``time level logger: message key=value ...`` for people at a terminal.

Under systemd, stderr is a stream to journald and ``JOURNAL_STREAM`` names it (``device:inode``,
see systemd.exec(5)). Then every line starts with the kernel-style ``<N>`` priority prefix that
journald strips and files as the entry's priority (sd-daemon(3)), in both formats, so
``journalctl -p warning`` shows warnings and errors; journald keeps the rest of the line, a clean
JSON object in ``json`` mode. Without the journal there is no prefix (stdout/stderr stay clean for
pipes and people).

Priorities: CRITICAL 2 (crit), ERROR 3 (err), WARNING 4 (warning), INFO 6 (info), DEBUG 7.

Tracebacks are written only at ``--log-level debug``: at other levels the message carries the
reason in one line. Secrets never reach the logger: only their references do. ``httpx`` logs each
request at INFO; it is kept at WARNING unless the level is ``debug``.

Every long-running command (the agent, the central servers) takes ``--log-format`` and
``--log-level`` from ``netready.cli.options.log_options`` and calls::

    logs.setup(log_format, log_level)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Any

from netready.errors import ConfigError

#: Structured fields copied from ``extra={...}`` into every line that has them.
EXTRA = ("site", "task", "result", "reason", "records", "seconds", "loop", "held", "restarts")

#: syslog priority (RFC 5424 severity) of each logging level, for journald.
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

#: The levels ``setup`` takes (``--log-level``), least verbose last.
LEVELS = ("debug", "info", "warning", "error")


def priority(levelno: int) -> int:
    """The syslog priority for a logging level (levels in between round to the more severe)."""
    for lvl in sorted(PRIORITY, reverse=True):
        if levelno >= lvl:
            return PRIORITY[lvl]
    return 7


def journal_stream(stream: IO[str]) -> bool:
    """True when ``stream`` is the journald stream systemd announced in ``JOURNAL_STREAM``."""
    want = os.environ.get("JOURNAL_STREAM")
    if not want:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in EXTRA if hasattr(record, k)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "priority": priority(record.levelno),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info and self.debug:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``; tracebacks only when ``debug``."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        line = self.formatMessage(record)
        # a reason already in the message is not repeated
        extra = " ".join(f"{k}={v}" for k, v in _extras(record).items() if str(v) not in line)
        line += " " + extra if extra else ""
        if record.exc_info and self.debug:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JournalPrefix(logging.Formatter):
    """Wraps a formatter: ``<N>`` priority prefix on every physical line (journald's stream
    protocol reads a prefix per line, so a traceback's lines keep the record's priority)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        p = f"<{priority(record.levelno)}>"
        return "\n".join(p + line for line in self.inner.format(record).split("\n"))


def setup(fmt: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the root logger to ``stream`` (stderr) in ``fmt`` ('json' or 'text') at ``level``."""
    stream = stream or sys.stderr
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ConfigError(f"--log-level {level!r}: use one of {', '.join(LEVELS)}")
    debug = lvl <= logging.DEBUG
    inner: logging.Formatter = (
        JsonFormatter(debug=debug) if fmt == "json" else TextFormatter(debug=debug)
    )
    h = logging.StreamHandler(stream)
    h.setFormatter(JournalPrefix(inner) if journal_stream(stream) else inner)
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(lvl)
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
