"""InfluxDB: line protocol, writes and InfluxQL queries. The only module that knows line protocol.

Default: the v1 HTTP API (``POST /write?db=&rp=&precision=ms``, ``GET/POST /query?db=&q=``),
which InfluxDB 1.x, 2.x (v1 compatibility + DBRP) and 3 Core all accept. Auth by user/password
(query parameters ``u``/``p`` are avoided: HTTP Basic) or ``Authorization: Token ...``.
Optional v2 API (token/org/bucket) through ``influxdb-client`` for writes.

Acknowledgement: a write counts as stored only when the server answers ``204 No Content``, as
InfluxDB 1.x, 2.x and 3 do for ``/write`` and ``/api/v2/write``. Any other status -- a proxy or
captive portal answering ``200`` with an HTML page -- is a retryable error that says what answered.
A rejected batch (1.x and 3.x ``400``; 2.x ``422`` partial write: type conflict, outside
retention; ``413`` too large) raises ``PointRejected`` so the shipper splits it and dead-letters only
the bad points.

Escaping (checked against InfluxDB 1.6, see docs/design.md):
- measurement: ``,`` and space are escaped with a backslash;
- tag keys, tag values and field keys: ``,``, ``=`` and space; a backslash is left as it is
  (1.x keeps a backslash literal unless it precedes one of those), so it is NOT doubled;
  a value ending in a backslash cannot be written at all and is rejected;
- string field values: ``\\`` and ``"`` escaped, inside double quotes;
- newlines (and carriage returns) are rejected everywhere.
Tags in ``records.FIELD_TAGS`` (the declared ``tech``) are written as string fields, except on
``records.STATE_TAGGED`` measurements: a site changing technology keeps its series.
Floats are written with ``repr`` so they stay floats (``1.0``); ints get ``i``; bools ``true``/``false``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from netready.errors import (
    ConfigError,
    PointRejected,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreRetryable,
    StoreUnreachable,
)
from netready.inventory import StoreConfig, redact
from netready.records import FIELD_TAGS, STATE_TAGGED, FieldValue, Record

_MEAS = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STR = str.maketrans({"\\": "\\\\", '"': '\\"'})


class LineProtocolError(ConfigError):
    """A record cannot be expressed in line protocol (newline, trailing backslash, no fields)."""


def _check(kind: str, s: str, rec: Record) -> None:
    if "\n" in s or "\r" in s:
        raise LineProtocolError(f"{rec.measurement}: {kind} {s[:40]!r} contains a newline")


def _key(kind: str, s: str, rec: Record) -> str:
    _check(kind, s, rec)
    if s.endswith("\\"):
        raise LineProtocolError(
            f"{rec.measurement}: {kind} {s[:40]!r} ends with a backslash, which InfluxDB cannot store"
        )
    return s.translate(_KEY)


def _field_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + str(v).translate(_STR) + '"'


#: Timestamp precisions ``encode`` writes: ms (our writes say ``precision=ms``) and ns (line
#: protocol's default, what Telegraf's ``inputs.exec`` parses unless told otherwise).
PRECISION_FACTOR = {"ms": 1, "ns": 1_000_000}


def encode(rec: Record, precision: str = "ms") -> str:
    """One record as one line of line protocol (timestamp in ms, or ns)."""
    _check("measurement", rec.measurement, rec)
    if rec.measurement.endswith("\\"):
        raise LineProtocolError(f"measurement {rec.measurement!r} ends with a backslash")
    if not rec.fields:
        raise LineProtocolError(f"{rec.measurement}: a point needs at least one field")
    parts = [rec.measurement.translate(_MEAS)]
    state: list[tuple[str, FieldValue]] = []
    keep_state = rec.measurement in STATE_TAGGED
    for k in sorted(rec.tags):
        if k in FIELD_TAGS and not keep_state and k not in rec.fields:
            state.append((k, rec.tags[k]))  # stored as a field: see records.FIELD_TAGS
            continue
        parts.append(f"{_key('tag key', k, rec)}={_key('tag value', rec.tags[k], rec)}")
    fields = []
    for k, v in (*rec.fields.items(), *state):
        if isinstance(v, str):
            _check("string field", v, rec)
        fields.append(f"{_key('field key', k, rec)}={_field_value(v)}")
    return f"{','.join(parts)} {','.join(fields)} {rec.time_ms * PRECISION_FACTOR[precision]}"


def encode_many(records: Iterable[Record], precision: str = "ms") -> list[str]:
    return [encode(r, precision) for r in records]


# ------------------------------------------------------------------------------ clients


@dataclass
class QueryResult:
    """One InfluxQL series: name, tags (GROUP BY), columns, rows."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.values]


def _retry_after(resp: httpx.Response) -> float | None:
    ra = resp.headers.get("Retry-After")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        return None


#: Write answers that mean "some points are bad": split the batch, dead-letter the bad ones.
REJECTED = (400, 413, 422)


def _check_write(url: str, status: int, headers: Any, detail: str) -> None:
    """A write is stored only on 204; anything else raises (see the module docstring)."""
    if status == 204:
        return
    if status in REJECTED:
        raise PointRejected(f"InfluxDB rejected points (HTTP {status}): {detail}")
    h = {
        str(k).lower(): redact(" ".join(str(v).split()))[:60]
        for k, v in dict(headers or {}).items()
    }
    version = h.get("x-influxdb-version")
    server = h.get("server") or (f"InfluxDB {version}" if version else "no Server header")
    ctype = h.get("content-type", "no content type").split(";")[0]
    raise StoreRetryable(
        f"{url} answered the write with HTTP {status} ({ctype}, {server}), not 204 No Content: "
        "not counted as stored (a proxy or captive portal in the way?)",
        None,
    )


def _server_error(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        msg = body.get("error") or body.get("message") or resp.text
    except (ValueError, AttributeError):
        msg = resp.text
    return redact(" ".join(str(msg).split()))[:300]


class InfluxV1:
    """The v1 HTTP API client (works with InfluxDB 1.x, 2.x compat, 3 Core)."""

    def __init__(self, cfg: StoreConfig):
        if not cfg.url:
            raise ConfigError("store: no url configured")
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        headers = {"User-Agent": "netready"}
        auth: tuple[str, str] | None = None
        if cfg.token is not None:
            headers["Authorization"] = f"Token {cfg.token.resolve()}"
        elif cfg.username is not None and cfg.password is not None:
            auth = (cfg.username.resolve(), cfg.password.resolve())
        self._http = httpx.Client(
            headers=headers, auth=auth, verify=cfg.verify_tls, timeout=cfg.timeout_s
        )
        #: gzip level of write bodies when ``cfg.gzip`` (1: 3-4x smaller at the least CPU;
        #: bench/ingest.py compares levels)
        self.gzip_level = 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfluxV1:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, self.url + path, **kw)
        except httpx.TimeoutException:
            raise StoreRetryable(
                f"InfluxDB at {self.url}: timed out after {self.cfg.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as e:
            reason = redact(str(e).splitlines()[0]) if str(e) else type(e).__name__
            raise StoreUnreachable(f"InfluxDB at {self.url} is unreachable: {reason}") from None
        if resp.status_code in (401, 403):
            raise StoreAuthError(
                f"InfluxDB at {self.url} refused our credentials (HTTP {resp.status_code}): "
                f"{_server_error(resp)}"
            )
        if resp.status_code == 404 or (
            resp.status_code >= 400 and "database not found" in resp.text
        ):
            raise StoreNotFound(
                f"InfluxDB at {self.url}: database {self.cfg.database!r} not found "
                f"({_server_error(resp)})"
            )
        if resp.status_code == 429 or resp.status_code >= 500:
            raise StoreRetryable(
                f"InfluxDB at {self.url}: HTTP {resp.status_code}: {_server_error(resp)}",
                _retry_after(resp),
            )
        return resp

    def ping(self) -> str:
        """Server version from ``/ping``."""
        resp = self._request("GET", "/ping")
        return resp.headers.get("X-Influxdb-Version", "unknown")

    def write_lines(self, lines: Sequence[str]) -> None:
        """POST lines; raises PointRejected (400), StoreRetryable, StoreAuthError, ..."""
        if not lines:
            return
        body = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=self.gzip_level)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.cfg.database, "precision": "ms"}
        if self.cfg.retention_policy:
            params["rp"] = self.cfg.retention_policy
        resp = self._request("POST", "/write", params=params, content=body, headers=headers)
        _check_write(self.url, resp.status_code, resp.headers, _server_error(resp))

    def write(self, records: Iterable[Record]) -> None:
        self.write_lines(encode_many(records))

    def query(
        self, q: str, *, epoch: str | None = "ms", params: dict[str, Any] | None = None
    ) -> list[QueryResult]:
        """Run InfluxQL; one QueryResult per series across all statements."""
        data: dict[str, Any] = {"db": self.cfg.database, "q": q}
        if epoch:
            data["epoch"] = epoch
        if params:
            data["params"] = json.dumps(params)
        resp = self._request("POST", "/query", data=data)
        if resp.status_code >= 400:
            raise StoreError(
                f"InfluxQL query failed (HTTP {resp.status_code}): {_server_error(resp)}"
            )
        body = resp.json()
        out: list[QueryResult] = []
        for res in body.get("results", []):
            if "error" in res:
                err = res["error"]
                if "database not found" in err:
                    raise StoreNotFound(f"InfluxDB at {self.url}: {err}")
                raise StoreError(f"InfluxQL error: {err}")
            for s in res.get("series", []) or []:
                out.append(
                    QueryResult(
                        s.get("name", ""), s.get("tags") or {}, s["columns"], s.get("values") or []
                    )
                )
        return out

    def create_database(self) -> None:
        """CREATE DATABASE (idempotent). For tests, the demo and first set-up."""
        resp = self._request("POST", "/query", data={"q": f'CREATE DATABASE "{self.cfg.database}"'})
        if resp.status_code >= 400:
            raise StoreError(f"CREATE DATABASE failed: {_server_error(resp)}")


def _v2_message(e: Exception) -> str:
    """The server's one-line reason from an influxdb-client error (its JSON ``message``)."""
    body = getattr(e, "body", None)
    try:
        msg = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        msg = None
    text = str(msg or getattr(e, "message", None) or getattr(e, "reason", None) or type(e).__name__)
    return redact(" ".join(text.split()))[:300]


class InfluxV2:
    """Writes through ``influxdb-client`` (``/api/v2/write``; InfluxDB 1.8+, 2.x, 3.x).

    Synchronous calls only: the client's batching mode loses data at exit unless closed.
    Queries still use InfluxQL through the v1 compatibility API (``InfluxV1``).
    """

    def __init__(self, cfg: StoreConfig):
        from netready.optional import require

        require("influxdb_client", "store kind influxdb_v2")
        from influxdb_client import InfluxDBClient, WriteService

        if not (cfg.url and cfg.token and cfg.org and cfg.bucket):
            raise ConfigError("store influxdb_v2 needs url, token, org and bucket")
        self.cfg = cfg
        self.org, self.bucket = cfg.org, cfg.bucket
        self._client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token.resolve(),
            org=cfg.org,
            verify_ssl=cfg.verify_tls,
            timeout=int(cfg.timeout_s * 1000),
            enable_gzip=cfg.gzip,
        )
        self._service = WriteService(self._client.api_client)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> InfluxV2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_lines(self, lines: Sequence[str]) -> None:
        """POST lines to ``/api/v2/write`` through the client's ``WriteService`` (the
        ``write_api`` hides the status, and any 2xx would pass): 204 or an error. The client
        does not retry on its own (no ``retries`` set); the shipper owns backoff."""
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        if not lines:
            return
        try:
            _, status, headers = self._service.post_write_with_http_info(
                org=self.org,
                bucket=self.bucket,
                body="\n".join(lines).encode(),
                precision="ms",
                content_type="text/plain; charset=utf-8",
            )
        except (ApiException, InfluxDBError) as e:
            status = getattr(e, "status", None) or getattr(
                getattr(e, "response", None), "status", None
            )
            msg = _v2_message(e)
            headers = getattr(e, "headers", None) or {}
            if status in (401, 403):
                raise StoreAuthError(
                    f"InfluxDB at {self.cfg.url} refused the token (HTTP {status})"
                ) from None
            if status == 404:
                raise StoreNotFound(
                    f"InfluxDB at {self.cfg.url}: bucket {self.cfg.bucket!r} or org not found"
                ) from None
            if status in REJECTED:
                raise PointRejected(f"InfluxDB rejected points (HTTP {status}): {msg}") from None
            if status == 429 or (status and status >= 500):
                ra = headers.get("Retry-After") if hasattr(headers, "get") else None
                raise StoreRetryable(
                    f"InfluxDB at {self.cfg.url}: HTTP {status}",
                    float(ra) if ra and str(ra).isdigit() else None,
                ) from None
            if status:
                _check_write(self.cfg.url or "", int(status), headers, msg)
            raise StoreError(f"InfluxDB write failed: {msg}") from None
        except (Urllib3Error, OSError) as e:
            raise StoreUnreachable(f"InfluxDB at {self.cfg.url} is unreachable: {e}") from None
        _check_write(self.cfg.url or "", int(status), headers, "")

    def write(self, records: Iterable[Record]) -> None:
        self.write_lines(encode_many(records))


Writer = InfluxV1 | InfluxV2


def writer_for(cfg: StoreConfig) -> Writer:
    """The write client for a store config (``embedded`` has none)."""
    if cfg.kind == "influxdb_v1":
        return InfluxV1(cfg)
    if cfg.kind == "influxdb_v2":
        return InfluxV2(cfg)
    raise ConfigError("store kind 'embedded' has no InfluxDB client")


def query_client_for(cfg: StoreConfig) -> InfluxV1:
    """InfluxQL through the v1 API (v2/3 serve it via DBRP mapping with a token)."""
    if cfg.kind == "embedded":
        raise ConfigError("store kind 'embedded' has no InfluxDB client")
    return InfluxV1(cfg)


def quote_ident(name: str) -> str:
    """InfluxQL identifier quoting."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """InfluxQL string literal quoting."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
