"""The query layer: aggregates computed *in the store*, never raw points pulled into Python.

Two back ends answer the same questions with the same arithmetic:

- ``SqliteStore`` (``netready/store.py``, beside the schema it reads): the embedded store (the
  spool's ``points`` table), in SQL with ``json_extract`` and window functions
  (``ROW_NUMBER() OVER (PARTITION BY ...)``).
- ``InfluxStore`` (here): InfluxDB through the v1 ``/query`` API, in InfluxQL (``PERCENTILE``,
  ``COUNT``, ``LAST`` ... ``GROUP BY "site"``).

Percentiles are nearest-rank, exactly as InfluxQL's ``PERCENTILE(f, p)``: sort the n values,
take the k-th with k = floor(n·p/100 + 0.5), clamped to 1..n (InfluxQL returns null when
k < 1; we then take ``MIN``, which is the clamped value). Both stores therefore return
identical numbers for identical points.

Clinic hours. InfluxQL cannot OR several time ranges in one WHERE (InfluxDB 1.x returns an
empty result, checked on 1.6), and has no time-of-day function. So the window is cut into
*sessions* (one per clinic day: [start, end) in UTC ms, computed by the caller with the
site's time zone) and every aggregate is computed per site **per session**: one InfluxQL
statement per distinct session (all statements in one request), and in SQL one query that
joins the points to a temporary table of (site, session) ranges. The caller combines the
per-session aggregates (a handful of numbers per site), see ``readiness.combine``.

Long windows. When the report's window starts before the oldest point the raw retention policy
still holds, and ``netready store init`` set up hourly downsampling (``netready/retention.py``;
found on the server: ``SHOW CONTINUOUS QUERIES``), the aggregates of ``rtt``, ``throughput``
and ``media`` are read from the hourly series instead: a count is the sum of the hourly counts,
a high percentile (p >= 50) the nearest-rank p-th percentile of the hourly p-th percentiles, a
low one (the p10s) that of the hourly minima, over the hours that start inside the session.
Exact when an hour holds at most one point (throughput, media at their default cadences); for
rtt (12 windows an hour) an approximation, see docs/scaling.md. The newest measurement is taken from the raw points where they still exist; the
router-detected tech from the raw retention only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from netready import retention
from netready.errors import StoreError
from netready.influx import InfluxV1, quote_ident, quote_str
from netready.inventory import StoreConfig
from netready.store import (
    DETECTED_TECH_MEASUREMENTS,
    Agg,
    AggRows,
    Sessions,
    SqliteStore,
    WeekRows,
    check_name,
    empty,
    nearest_rank,
)

__all__ = [
    "DETECTED_TECH_MEASUREMENTS",
    "Agg",
    "AggRows",
    "EmptyStore",
    "InfluxStore",
    "Sessions",
    "SqliteStore",
    "Store",
    "WeekRows",
    "nearest_rank",
    "open_store",
]


class Store(Protocol):
    def aggregate(
        self,
        measurement: str,
        aggs: Sequence[Agg],
        sessions: Sessions,
        by: str | None = None,
        exclude: Mapping[str, str] | None = None,
    ) -> AggRows:
        """Per (site, ``by`` tag value, session): the aggregates over valid points, leaving out
        points whose tag equals a value in ``exclude`` (e.g. ``{"method": "find_capacity"}``)."""
        ...

    def failures(
        self, measurement: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, dict[str, int]]: ...

    def latest(
        self, measurement: str, field: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, int]: ...

    def detected_tech(self, sites: Iterable[str], t0: int, t1: int) -> dict[str, str]: ...

    def weekly_latest(
        self,
        measurement: str,
        fields: Sequence[str],
        sites: Iterable[str],
        t0: int,
        t1: int,
        by: str,
        match: Mapping[str, str],
    ) -> WeekRows:
        """Per (site, week start, ``by`` tag value): each field's newest value among records
        whose tags equal ``match`` (weeks start Monday 00:00 UTC: ``store.week_start``)."""
        ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- InfluxDB

_VALID = "(\"result\" = '' OR \"result\" = 'ok')"


class InfluxStore:
    """InfluxDB through InfluxQL; one HTTP request per question (statements batched)."""

    #: concurrent requests per question; several questions may be in flight at once
    WORKERS = 4
    concurrent = True  # httpx.Client is thread-safe

    #: Estate aggregates are heavier than writes: at least this per request (seconds).
    MIN_TIMEOUT_S = 120.0

    def __init__(self, cfg: StoreConfig, client: InfluxV1 | None = None):
        import threading

        from netready.influx import query_client_for

        if cfg.timeout_s < self.MIN_TIMEOUT_S:
            cfg = cfg.model_copy(update={"timeout_s": self.MIN_TIMEOUT_S})
        self.client = client or query_client_for(cfg)
        # At most WORKERS requests in flight in total, however many questions run at once:
        # more only queues inside the server and stretches each request towards its timeout.
        self._slots = threading.BoundedSemaphore(self.WORKERS)
        self._raw_rp = cfg.retention_policy
        self._layout: retention.Layout | None = None
        self._layout_lock = threading.Lock()

    def layout(self) -> retention.Layout:
        """The server's retention and downsampling, asked once (two ``SHOW`` statements)."""
        with self._layout_lock:
            if self._layout is None:
                self._layout = retention.discover(
                    self.client, self.client.cfg.database, self._raw_rp
                )
            return self._layout

    def _horizon(self) -> int | None:
        import time

        return self.layout().horizon_ms(int(time.time() * 1000))

    def hourly(self, measurement: str, t0: int) -> bool:
        """Whether [t0, ...) of ``measurement`` is read from its hourly series: it starts
        before the raw policy's horizon and the measurement is downsampled."""
        h = self._horizon()
        return h is not None and t0 < h and measurement in self.layout().hourly

    def _from(self, measurement: str, hourly: bool) -> str:
        if hourly:
            return f"{quote_ident(self.layout().hourly[measurement])}.{quote_ident(measurement)}"
        if self._raw_rp:
            return f"{quote_ident(self._raw_rp)}.{quote_ident(measurement)}"
        return quote_ident(measurement)

    def _query(self, q: str) -> list[Any]:
        with self._slots:
            return self.client.query(q)

    def close(self) -> None:
        self.client.close()

    def _run(self, statements: Sequence[str]) -> list[Any]:
        """One request per statement, ``WORKERS`` at a time (the server uses every core for
        concurrent queries but one for the statements of a single request); results in the
        order of the statements."""
        return [r for part in self._run_each(statements) for r in part]

    def _run_each(self, statements: Sequence[str]) -> list[list[Any]]:
        """As ``_run``, the results of each statement apart."""
        if len(statements) <= 1:
            return [self._query(q) for q in statements]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.WORKERS, len(statements))) as pool:
            return list(pool.map(self._query, statements))

    @staticmethod
    def _site_filter(sites: Iterable[str], limit: int = 200) -> str:
        s = sorted(set(sites))
        if not s or len(s) > limit:
            return ""  # cheaper to group every site and drop the others in Python
        alts = "|".join(re.escape(x) for x in s)
        return f' AND "site" =~ /^({alts})$/'

    def aggregate(
        self,
        measurement: str,
        aggs: Sequence[Agg],
        sessions: Sessions,
        by: str | None = None,
        exclude: Mapping[str, str] | None = None,
    ) -> AggRows:
        wanted: dict[tuple[int, int], set[str]] = defaultdict(set)
        for site, lst in sessions.items():
            for r in lst:
                wanted[r].add(site)
        ranges = sorted(wanted)
        hourly = bool(ranges) and self.hourly(measurement, ranges[0][0])
        cols: list[str] = []
        for a in aggs:
            name = check_name(a.field)
            if a.pct is None:
                f = retention.count_field(name) if hourly else name
                cols.append(f'{"SUM" if hourly else "COUNT"}({quote_ident(f)}) AS "{a.alias}"')
                continue
            if hourly:
                low = a.pct < 50  # see retention.min_field
                f = quote_ident(
                    retention.min_field(name) if low else retention.pct_field(name, a.pct)
                )
            else:
                f = quote_ident(name)
            cols.append(f'PERCENTILE({f}, {float(a.pct)!r}) AS "{a.alias}"')
            if a.pct < 50:  # k = floor(n*p/100 + 0.5) >= 1 whenever p >= 50
                cols.append(f'MIN({f}) AS "_min_{a.alias}"')
        group = '"site"' + (f", {quote_ident(check_name(by))}" if by else "")
        not_q = "".join(
            f" AND {quote_ident(check_name(k))} != {quote_str(v)}"
            for k, v in (exclude or {}).items()
        )
        src = self._from(measurement, hourly)
        stmts = []
        for t0, t1 in ranges:
            # hourly: the hours that start inside the session (an hour's point carries its start)
            a0 = t0 - t0 % retention.BUCKET_MS if hourly else t0
            stmts.append(
                f"SELECT {', '.join(cols)} FROM {src} WHERE {_VALID}"
                f" AND time >= {a0}ms AND time < {t1}ms{self._site_filter(wanted[(t0, t1)])}"
                f"{not_q} GROUP BY {group}"
            )
        out: AggRows = {}
        for (t0, _t1), results in zip(ranges, self._run_each(stmts), strict=True):
            members = wanted[(t0, _t1)]
            for res in results:
                site = res.tags.get("site", "")
                if site not in members:
                    continue
                g = res.tags.get(by, "") if by else ""
                for row in res.dicts():
                    vals: dict[str, float | None] = {}
                    for a in aggs:
                        v = row.get(a.alias)
                        if a.pct is not None and v is None:
                            v = row.get(f"_min_{a.alias}")
                        vals[a.alias] = v
                    if not empty(aggs, vals):
                        out[(site, g, t0)] = vals
        return out

    def failures(
        self, measurement: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, dict[str, int]]:
        keep = set(sites)
        hourly = self.hourly(measurement, t0)
        n = f'SUM("{retention.FAILED_N}")' if hourly else 'COUNT("reason")'
        if hourly:
            t0 -= t0 % retention.BUCKET_MS
        q = (
            f"SELECT {n} AS n FROM {self._from(measurement, hourly)} WHERE \"result\" != ''"
            f" AND \"result\" != 'ok' AND time >= {t0}ms AND time < {t1}ms"
            f'{self._site_filter(keep)} GROUP BY "site", "result"'
        )
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for res in self._run([q]):
            site = res.tags.get("site", "")
            if site in keep:
                for row in res.dicts():
                    if row["n"]:
                        out[site][res.tags.get("result", "")] = int(row["n"])
        return dict(out)

    def latest(
        self, measurement: str, field: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, int]:
        """Newest valid point per site: from the raw points while the raw policy holds them,
        else (a site silent since) from the hourly series (the start of its hour)."""
        keep = set(sites)
        h = self._horizon()
        hourly = self.hourly(measurement, t0) and h is not None
        raw_t0 = max(t0, h) if hourly and h is not None else t0
        out = self._latest(measurement, check_name(field), keep, raw_t0, t1, False)
        rest = keep - set(out)
        if hourly and rest and h is not None:
            out.update(self._latest(measurement, retention.count_field(field), rest, t0, h, True))
        return out

    def _latest(
        self, measurement: str, field: str, keep: set[str], t0: int, t1: int, hourly: bool
    ) -> dict[str, int]:
        q = (
            f"SELECT LAST({quote_ident(field)}) FROM {self._from(measurement, hourly)}"
            f" WHERE {_VALID} AND time >= {t0}ms AND time < {t1}ms{self._site_filter(keep)}"
            f' GROUP BY "site"'
        )
        out = {}
        for res in self._run([q]):
            site = res.tags.get("site", "")
            if site in keep and res.values:
                out[site] = int(res.values[0][0])
        return out

    def detected_tech(self, sites: Iterable[str], t0: int, t1: int) -> dict[str, str]:
        """Newest ``detected_tech`` per site, whether collectors write it as a tag or a field."""
        keep = set(sites)
        h = self._horizon()
        t0 = max(t0, h) if h else t0  # not downsampled: the raw retention only
        best: dict[str, tuple[int, str]] = {}
        for m in DETECTED_TECH_MEASUREMENTS:
            mq = self._from(m, False)
            fkeys = {
                r[0]: r[1] for res in self._run([f"SHOW FIELD KEYS FROM {mq}"]) for r in res.values
            }
            if not fkeys:
                continue
            where = f" WHERE time >= {t0}ms AND time < {t1}ms{self._site_filter(keep)}"
            if "detected_tech" in fkeys:
                q = f'SELECT LAST("detected_tech") FROM {mq}{where} GROUP BY "site"'
                for res in self._run([q]):
                    site = res.tags.get("site", "")
                    for t, v in res.values:
                        if (
                            site in keep
                            and v
                            and v != "unknown"
                            and (site not in best or t > best[site][0])
                        ):
                            best[site] = (int(t), str(v))
            tagq = f"SHOW TAG KEYS FROM {mq}"
            tags = {r[0] for res in self._run([tagq]) for r in res.values}
            if "detected_tech" in tags:
                num = next(
                    (k for k, t in sorted(fkeys.items()) if t in ("float", "integer")),
                    next(iter(sorted(fkeys))),
                )
                q = (
                    f"SELECT LAST({quote_ident(num)}) FROM {mq}{where}"
                    f" AND \"detected_tech\" != '' AND \"detected_tech\" != 'unknown'"
                    ' GROUP BY "site", "detected_tech"'
                )
                for res in self._run([q]):
                    site = res.tags.get("site", "")
                    v = res.tags.get("detected_tech", "")
                    for t, _x in res.values:
                        if (
                            site in keep
                            and v
                            and v != "unknown"
                            and (site not in best or t > best[site][0])
                        ):
                            best[site] = (int(t), v)
        return {s: v for s, (_t, v) in best.items()}

    def weekly_latest(
        self,
        measurement: str,
        fields: Sequence[str],
        sites: Iterable[str],
        t0: int,
        t1: int,
        by: str,
        match: Mapping[str, str],
    ) -> WeekRows:
        """``LAST(f)`` per field, ``GROUP BY time(7d, 4d)`` (weeks from Monday 00:00 UTC),
        ``"site"`` and ``by``: one statement."""
        keep = set(sites)
        cols = ", ".join(f"LAST({quote_ident(check_name(f))}) AS {quote_ident(f)}" for f in fields)
        cond = "".join(
            f" AND {quote_ident(check_name(k))} = {quote_str(v)}" for k, v in sorted(match.items())
        )
        q = (
            f"SELECT {cols} FROM {quote_ident(measurement)} WHERE time >= {t0}ms"
            f" AND time < {t1}ms{cond}{self._site_filter(keep)}"
            f' GROUP BY time(7d, 4d), "site", {quote_ident(check_name(by))} fill(none)'
        )
        out: WeekRows = {}
        for res in self._run([q]):
            site = res.tags.get("site", "")
            if site not in keep:
                continue
            for row in res.dicts():
                d = {f: row.get(f) for f in fields if row.get(f) is not None}
                if d:
                    out[(site, int(row["time"]), res.tags.get(by, ""))] = d
        return out


def open_store(cfg: StoreConfig, spool_path: str | Path | None) -> tuple[Store, str]:
    """The store a report reads (InfluxDB when configured, else the embedded spool) and a name
    for it. A spool that does not exist yet is an empty store: the report says NO DATA."""
    if cfg.kind == "embedded":
        if spool_path is None:
            raise StoreError("no spool path for the embedded store")
        if not Path(spool_path).exists():
            return EmptyStore(), f"embedded {spool_path} (not created yet: no data)"
        return SqliteStore(spool_path), f"embedded {spool_path}"
    return InfluxStore(cfg), f"{cfg.kind} {cfg.url} db={cfg.database}"


class EmptyStore:
    """No store yet (a fresh install before the agent ran): every question has no answer."""

    def aggregate(
        self,
        measurement: str,
        aggs: Sequence[Agg],
        sessions: Sessions,
        by: str | None = None,
        exclude: Mapping[str, str] | None = None,
    ) -> AggRows:
        return {}

    def failures(
        self, measurement: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, dict[str, int]]:
        return {}

    def latest(
        self, measurement: str, field: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, int]:
        return {}

    def detected_tech(self, sites: Iterable[str], t0: int, t1: int) -> dict[str, str]:
        return {}

    def weekly_latest(
        self,
        measurement: str,
        fields: Sequence[str],
        sites: Iterable[str],
        t0: int,
        t1: int,
        by: str,
        match: Mapping[str, str],
    ) -> WeekRows:
        return {}

    def close(self) -> None:
        pass
