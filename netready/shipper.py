"""Ship spooled records to the central store: oldest first, at least once.

- A batch is deleted from the spool only after the store acknowledged it (HTTP 204: see
  ``netready.influx``); ``shipped`` counts the rows actually deleted.
- A batch rejected as malformed (1.x ``400``, 2.x ``422`` partial write) is split in halves
  until the bad points are isolated; only those go to the dead-letter table, the rest land.
  A batch of n points with k bad ones costs at most 2n - 1 requests, about 2k log2(n).
- Temporary failures (timeouts, 429, 5xx, unreachable) are retried with exponential backoff
  and full jitter, honouring ``Retry-After``; auth and missing-database errors stop the drain
  (retrying in a tight loop would not help) and are kept as ``last_error``.
- A spool failure (``SpoolError``: disk full, corrupt) is not the store's fault: it is raised to
  the caller (the agent's supervised ship loop), never retried here as if the server had failed.
- Pipelined (bench/ingest.py): while one batch is in flight (a helper thread waits for its
  answer), the spool deletes the batch acknowledged before it and reads the next one, so the
  spool's commits (an fsync each at ``synchronous=FULL``) and reads overlap the server's time
  instead of adding to it. At most one batch is in flight; a batch is still deleted only after
  its own 204. ``last_error`` is cleared once after a failure, not rewritten after every batch.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from netready.errors import (
    PointRejected,
    SpoolError,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreRetryable,
    StoreUnreachable,
)
from netready.spool import Spool

log = logging.getLogger("netready.shipper")


class LineWriter(Protocol):
    def write_lines(self, lines: Sequence[str]) -> None: ...


@dataclass
class DrainResult:
    shipped: int = 0
    dead_lettered: int = 0
    attempts: int = 0
    error: str | None = None  # why the drain stopped early, if it did
    seconds: float = 0.0


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 60.0
    rng: random.Random = random.Random()  # noqa: RUF009 - one shared generator is fine

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff; ``Retry-After`` is a floor."""
        d = self.rng.uniform(0, min(self.cap_s, self.base_s * 2 ** min(attempt, 30)))
        if retry_after is not None:
            d = max(d, min(retry_after, 3600.0))  # a server asking for >1 h is misconfigured
        return d


class Shipper:
    def __init__(
        self,
        spool: Spool,
        writer: LineWriter,
        batch_size: int = 5000,
        backoff: Backoff | None = None,
    ):
        self.spool = spool
        self.writer = writer
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()
        #: whether the spool's ``last_error`` may be set (None: not known yet)
        self._error_set: bool | None = None

    def _set_error(self, e: Exception | None) -> None:
        if e is None and self._error_set is False:
            return
        self.spool.set_meta("last_error", None if e is None else str(e))
        self._error_set = e is not None

    def _send(self, rows: Sequence[tuple[int, str]], res: DrainResult) -> None:
        """Send rows; split on rejection. Retryable errors propagate."""
        try:
            res.attempts += 1
            self.writer.write_lines([line for _, line in rows])
        except PointRejected as e:
            if len(rows) == 1:
                log.warning("dead-lettered a point: %s", e)
                res.dead_lettered += self.spool.dead_letter(rows, str(e))
                return
            mid = len(rows) // 2
            self._send(rows[:mid], res)
            self._send(rows[mid:], res)
            return
        res.shipped += self.spool.ack([i for i, _ in rows])

    def ship_batch(self, res: DrainResult | None = None) -> int:
        """Ship the oldest batch once (no retry). Returns rows handled (0: spool empty)."""
        res = res or DrainResult()
        rows = self.spool.oldest(self.batch_size)
        if rows:
            self._send(rows, res)
        return len(rows)

    def _pipeline(
        self,
        pool: ThreadPoolExecutor,
        res: DrainResult,
        deadline: float | None,
        stop: threading.Event | None,
    ) -> bool:
        """Ship batches, one in flight while the spool acks the previous one and reads the
        next. True when the spool is empty; False when the deadline passed or ``stop`` was set.
        A store error propagates (the batch acknowledged before it is still deleted)."""
        rows = self.spool.oldest(self.batch_size)
        done: list[int] = []
        try:
            while rows:
                res.attempts += 1
                fut = pool.submit(self.writer.write_lines, [line for _, line in rows])
                if done:
                    res.shipped += self.spool.ack(done)
                    done = []
                more = (deadline is None or time.monotonic() < deadline) and not (
                    stop and stop.is_set()
                )
                nxt = self.spool.oldest(self.batch_size, after=rows[-1][0]) if more else []
                try:
                    fut.result()
                except PointRejected as e:
                    if len(rows) == 1:
                        log.warning("dead-lettered a point: %s", e)
                        res.dead_lettered += self.spool.dead_letter(rows, str(e))
                    else:
                        self._send(rows[: len(rows) // 2], res)
                        self._send(rows[len(rows) // 2 :], res)
                else:
                    done = [i for i, _ in rows]
                self._set_error(None)
                if not more:
                    return False
                rows = nxt
            return True
        finally:
            if done:
                res.shipped += self.spool.ack(done)

    def drain(
        self,
        *,
        deadline: float | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DrainResult:
        """Ship until the spool is empty, the deadline (monotonic) passes, or ``stop`` is set."""
        res = DrainResult()
        t0 = time.monotonic()
        failures = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="netready-ship") as pool:
            while not (stop and stop.is_set()):
                if deadline is not None and time.monotonic() >= deadline:
                    res.error = res.error or "deadline reached"
                    break
                before = res.shipped + res.dead_lettered
                try:
                    if self._pipeline(pool, res, deadline, stop):
                        res.error = None
                        break
                    failures = 0
                    continue  # the deadline or stop: the loop's test says which
                except SpoolError:
                    raise
                except (StoreAuthError, StoreNotFound) as e:
                    res.error = str(e)
                    self._set_error(e)
                    log.error("shipping stopped: %s", e)
                    break
                except (StoreRetryable, StoreUnreachable, StoreError) as e:
                    res.error = str(e)
                    self._set_error(e)
                    if res.shipped + res.dead_lettered > before:
                        failures = 0  # some batches landed: the backoff starts again
                    d = self.backoff.delay(failures, getattr(e, "retry_after", None))
                    failures += 1
                    log.warning("ship failed (%s); retry in %.1f s", e, d)
                    if deadline is not None and time.monotonic() + d >= deadline:
                        break
                    if stop is not None:
                        if stop.wait(d):
                            break
                    else:
                        sleep(d)
        res.seconds = time.monotonic() - t0
        return res
