"""One root error, a tree by cause. Messages are one line and name the file, site or target.

Exceptions are for bad configuration, bad input and bugs. A measurement that fails is
still a record (``result`` tag plus ``reason`` field), not an exception.
"""

from __future__ import annotations


class NetreadyError(Exception):
    """Root of every error netready raises on purpose. ``str(e)`` is a one-line message."""

    exit_code = 1


class ConfigError(NetreadyError):
    """The inventory, a spec or a command-line option is wrong (the user's fault)."""

    exit_code = 2


class InventoryError(ConfigError):
    """site_inventory.yaml is missing, malformed or invalid. One line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class SecretError(ConfigError):
    """A secret reference (env:NAME, file:PATH) cannot be resolved. Never contains the value."""


class StoreError(NetreadyError):
    """The central store (InfluxDB) or the local spool failed."""


class StoreUnreachable(StoreError):
    """Could not connect to the store (DNS, refused, timeout, TLS)."""


class StoreAuthError(StoreError):
    """The store refused our credentials (401/403)."""


class StoreNotFound(StoreError):
    """The database or bucket does not exist."""


class PointRejected(StoreError):
    """The store rejected one or more points as malformed (HTTP 400). Retrying will not help."""


class StoreRetryable(StoreError):
    """A temporary failure (429, 5xx): retry later; ``retry_after`` in seconds if the server said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ProbeError(NetreadyError):
    """A probe could not start (bad target, no permission). Failed *measurements* are records."""


class CollectorError(NetreadyError):
    """A collector could not read its device or file."""


class ParseError(NetreadyError):
    """Input bytes or text could not be parsed (pcap, CLI output, JSON from a tool): bad input."""

    exit_code = 2


class SpoolError(StoreError):
    """The local spool cannot be used right now (locked, busy, I/O error). Nothing was committed."""


class SpoolFull(SpoolError):
    """No space left for the spool (SQLITE_FULL / ENOSPC): the caller keeps its records and retries."""


class SpoolCorrupt(SpoolError):
    """The spool file is not a database or is malformed; the agent quarantines it."""


class SpoolLocked(SpoolError):
    """Another agent or ``netready ship`` holds this spool (one writer per spool)."""


class MissingExtra(NetreadyError, ImportError):
    """An optional package (an extra of the install) is needed and missing; names the extra.

    Also an ``ImportError``, so a lazily loaded command that cannot import says why. Exit 2:
    the install does not match the configuration, and restarting will not mend it."""

    exit_code = 2


class ServerError(NetreadyError):
    """A central server (reflector, responder, speed endpoint) could not start: its address
    is in use or not this host's, or its TLS certificate and key cannot be loaded."""
