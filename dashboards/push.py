"""Push the dashboards (and optionally the InfluxDB data source) to a Grafana over its HTTP API.

Uses ``grafana-client`` (niquests underneath). Every step is an idempotent upsert by uid:

1. ``GET /api/health``: the Grafana version (refuse anything older than ``MIN_GRAFANA``).
2. Folder: ``GET /api/folders/{uid}``; on 404 ``POST /api/folders`` with that uid.
3. Data source (when given): ``GET /api/datasources/uid/{uid}``; on 404 ``POST /api/datasources``,
   else ``PUT /api/datasources/uid/{uid}`` (secrets cannot be read back, so it is always written).
4. Each dashboard: ``GET /api/dashboards/uid/{uid}``; when missing, different, or in another
   folder, ``POST /api/dashboards/db`` with ``overwrite: true`` into the folder; else left alone
   (no new dashboard version for an unchanged push).

Auth: ``Authorization: Bearer <token>`` (a Grafana service-account token; Editor can push
dashboards and folders, the data source needs Admin). Errors are one line, naming the URL.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from netready.dashboards import build
from netready.dashboards.compat import MIN_GRAFANA, parse_version
from netready.dashboards.names import (
    DATABASE,
    DATASOURCE_UID,
    DATASOURCE_V2_UID,
    FOLDER_TITLE,
    folder_uid_for,
)
from netready.dashboards.provisioning import datasource_v1, datasource_v2

from netready.errors import ConfigError, NetreadyError


class GrafanaError(NetreadyError):
    """Grafana refused or failed a request, or is not reachable."""


class GrafanaAuthError(GrafanaError):
    """401/403: the token is wrong or lacks a role."""


class GrafanaVersionError(GrafanaError):
    """The server is too old, or does not look like Grafana at all."""


@dataclass(frozen=True)
class DatasourceSpec:
    """The InfluxDB data source to create or update (InfluxQL mode)."""

    url: str
    database: str = DATABASE
    user: str | None = None
    password: str | None = None
    token: str | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if not re.match(r"^https?://", self.url):
            raise ConfigError(
                f"--datasource-url must start with http:// or https://, got {self.url!r}"
            )
        if self.token and (self.user or self.password):
            raise ConfigError("give the InfluxDB data source a token or a user/password, not both")
        if bool(self.user) != bool(self.password):
            raise ConfigError("the InfluxDB data source needs both a user and a password")

    @property
    def uid(self) -> str:
        """The 2.x/3.x data source with a token, else the 1.x one (as the provisioning files)."""
        return DATASOURCE_V2_UID if self.token else DATASOURCE_UID

    def payload(self) -> dict[str, Any]:
        """The body for ``POST /api/datasources`` / ``PUT /api/datasources/uid/{uid}``."""
        base = datasource_v2() if self.token else datasource_v1()
        body: dict[str, Any] = {
            k: v for k, v in base.items() if k not in ("user", "secureJsonData", "editable")
        }
        body["url"] = self.url
        body["database"] = self.database
        body["jsonData"] = {**body["jsonData"], "dbName": self.database}
        if not self.verify_tls:
            body["jsonData"]["tlsSkipVerify"] = True
        if self.token:
            body["secureJsonData"] = {"httpHeaderValue1": f"Token {self.token}"}
        elif self.user:
            body["user"] = self.user
            body["secureJsonData"] = {"password": self.password}
        return body


def datasource_for(
    inventory_path: str | None = None,
    url: str | None = None,
    database: str = DATABASE,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
) -> DatasourceSpec | None:
    """The data source ``dashboards push`` creates: from its options, the rest from the
    inventory's store section (the URL, database or bucket and credentials; explicit options
    win). ``None`` without a URL (push leaves the data source alone)."""
    if inventory_path:
        from netready.inventory import load

        store = load(inventory_path).store
        if store.kind == "embedded" and not url:
            raise ConfigError(
                f"{inventory_path}: store kind is 'embedded': there is no InfluxDB for "
                "Grafana to read; give --datasource-url"
            )
        if store.kind != "embedded":
            url = url or store.url
            if database == DATABASE:
                database = (
                    store.database if store.kind == "influxdb_v1" else (store.bucket or database)
                )
            if not (user or token):
                if store.token is not None:
                    token = store.token.resolve()
                elif store.username is not None and store.password is not None:
                    user = store.username.resolve()
                    password = store.password.resolve()
    if url:
        return DatasourceSpec(url=url, database=database, user=user, password=password, token=token)
    if user or token:
        raise ConfigError("InfluxDB credentials given without --datasource-url")
    return None


Status = Literal["created", "updated", "unchanged", "missing", "skipped"]


@dataclass
class PushResult:
    url: str
    grafana_version: str
    folder_uid: str | None
    folder: Status = "unchanged"
    datasource: Status = "skipped"
    datasource_uid: str = DATASOURCE_UID
    dashboards: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Api:
    """grafana-client with its exceptions turned into one-line ``GrafanaError``s."""

    def __init__(self, url: str, token: str, timeout: float, verify: bool):
        from netready.optional import require

        require("grafana_client", "netready dashboards push")
        from grafana_client import GrafanaApi

        if not re.match(r"^https?://[^/]", url):
            raise ConfigError(f"--url must be http(s)://HOST[:PORT][/PATH], got {url!r}")
        if not token:
            raise ConfigError("no Grafana token: pass --token or set GRAFANA_TOKEN")
        self.url = url.rstrip("/")
        u = urlsplit(self.url)
        self.origin = f"{u.scheme}://{u.netloc.rpartition('@')[2]}"  # Grafana's answers carry root-relative URLs
        self.api = GrafanaApi.from_url(self.url, credential=token, timeout=timeout)
        self.api.client.verify = verify
        self.api.client.user_agent = "netready"
        self.api.client.s.headers["User-Agent"] = "netready"

    def call(self, what: str, method: str, path: str, **kw: Any) -> Any:
        from grafana_client.client import (
            GrafanaClientError,
            GrafanaException,
            GrafanaServerError,
            GrafanaTimeoutError,
            GrafanaUnauthorizedError,
        )
        from niquests.exceptions import RequestException

        try:
            return getattr(self.api.client, method)(path, **kw)
        except GrafanaUnauthorizedError:
            raise GrafanaAuthError(
                f"Grafana at {self.url} refused the token (HTTP 401) while trying to {what}: "
                "check --token / GRAFANA_TOKEN (a service-account token)"
            ) from None
        except GrafanaTimeoutError:
            raise GrafanaError(f"Grafana at {self.url} timed out while trying to {what}") from None
        except GrafanaServerError as e:
            raise GrafanaError(
                f"Grafana at {self.url} failed to {what} (HTTP {e.status_code}): {_msg(e.response)}"
            ) from None
        except GrafanaClientError as e:
            if e.status_code == 403:
                raise GrafanaAuthError(
                    f"Grafana at {self.url}: the token may not {what} (HTTP 403: "
                    f"{_msg(e.response)}); dashboards and folders need the Editor role, "
                    "the data source Admin"
                ) from None
            raise _NotOk(e.status_code, _msg(e.response)) from None
        except GrafanaException as e:
            raise GrafanaError(f"Grafana at {self.url} is unreachable: {_why(e.message)}") from None
        except RequestException as e:
            raise GrafanaError(f"Grafana at {self.url} is unreachable: {_why(str(e))}") from None


class _NotOk(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _why(s: str) -> str:
    """The cause of a connection failure, without urllib3's nesting."""
    if "Connection refused" in s or "Errno 111" in s:
        return "connection refused"
    if m := re.search(r"Failed to resolve '([^']+)'", s):
        return f"cannot resolve {m.group(1)}"
    if "CERTIFICATE_VERIFY_FAILED" in s or "certificate verify failed" in s:
        return "its TLS certificate is not trusted (--insecure skips the check)"
    if "timed out" in s.lower():
        return "timed out"
    if m := re.search(r"\[Errno -?\d+\] ([^'\")]+)", s):
        return m.group(1).strip()
    return _oneline(s)


def _oneline(s: str) -> str:
    return " ".join(str(s).split())[:300]


def _msg(response: Any) -> str:
    if isinstance(response, dict):
        return _oneline(response.get("message") or json.dumps(response))
    return _oneline(response or "")


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("id", "version")}


def push(
    url: str,
    token: str,
    *,
    folder: str | None = FOLDER_TITLE,
    datasource: DatasourceSpec | None = None,
    timeout: float = 10.0,
    verify_tls: bool = True,
) -> PushResult:
    """Upsert the folder, the data source (if given) and the three dashboards. Idempotent."""
    g = _Api(url, token, timeout, verify_tls)
    res = PushResult(url=g.url, grafana_version=_check_version(g), folder_uid=None)
    if folder:
        res.folder_uid = folder_uid_for(folder)
        res.folder = _upsert_folder(g, folder, res.folder_uid)
    else:
        res.folder = "skipped"
    if datasource is not None:
        res.datasource_uid = datasource.uid
    res.datasource = _upsert_datasource(g, datasource, res.warnings)
    for name, model in build.build_dashboards().items():
        res.dashboards.append(_upsert_dashboard(g, name, json.loads(build.to_json(model)), res))
    return res


def _check_version(g: _Api) -> str:
    """Step 1: Grafana's version (``/api/health`` needs no auth, so a bad token shows later)."""
    try:
        health = g.call("read its version", "GET", "/health")
    except _NotOk as e:
        raise GrafanaVersionError(
            f"{g.url} does not answer like Grafana (GET /api/health: HTTP {e.status}); "
            "give the Grafana base URL, e.g. https://grafana.example.nhs.uk"
        ) from None
    version = str(health.get("version", "")) if isinstance(health, dict) else ""
    parsed = parse_version(version)
    if parsed is None:
        raise GrafanaVersionError(
            f"{g.url} does not report a Grafana version (GET /api/health gave {_oneline(str(health))[:80]!r})"
        )
    if parsed < MIN_GRAFANA:
        raise GrafanaVersionError(
            f"Grafana {version} at {g.url} is too old: the netready dashboards need Grafana "
            f"{MIN_GRAFANA[0]}.{MIN_GRAFANA[1]} or later"
        )
    return version


def _upsert_folder(g: _Api, folder: str, fuid: str) -> Status:
    """Step 2: the folder, created by uid when missing."""
    try:
        g.call(f"read folder {fuid}", "GET", f"/folders/{fuid}")
        return "unchanged"
    except _NotOk as e:
        if e.status != 404:
            raise GrafanaError(
                f"Grafana at {g.url}: reading folder {fuid}: HTTP {e.status}: {e.message}"
            ) from None
    try:
        g.call(f"create folder {folder!r}", "POST", "/folders", json={"title": folder, "uid": fuid})
    except _NotOk as e:
        raise GrafanaError(
            f"Grafana at {g.url} would not create folder {folder!r} (uid {fuid}): "
            f"HTTP {e.status}: {e.message}"
        ) from None
    return "created"


def _datasource_exists(g: _Api, uid: str) -> bool:
    try:
        g.call(f"read data source {uid}", "GET", f"/datasources/uid/{uid}")
        return True
    except _NotOk as e:
        if e.status != 404:
            raise GrafanaError(
                f"Grafana at {g.url}: reading data source {uid}: HTTP {e.status}: {e.message}"
            ) from None
        return False


def _upsert_datasource(g: _Api, datasource: DatasourceSpec | None, warnings: list[str]) -> Status:
    """Step 3: the data source, written when given (its secret cannot be read back)."""
    if datasource is None:
        if any(_datasource_exists(g, uid) for uid in (DATASOURCE_UID, DATASOURCE_V2_UID)):
            return "skipped"
        warnings.append(
            f"data source {DATASOURCE_UID} (or {DATASOURCE_V2_UID}) does not exist in Grafana: "
            "the dashboards will ask for an InfluxDB data source; pass --datasource-url to "
            "create it, or provision dashboards/provisioning/datasources/*.yaml"
        )
        return "missing"
    uid, body = datasource.uid, datasource.payload()
    exists = _datasource_exists(g, uid)
    try:
        if exists:
            g.call(f"update data source {uid}", "PUT", f"/datasources/uid/{uid}", json=body)
            return "updated"
        g.call(f"create data source {uid}", "POST", "/datasources", json=body)
        return "created"
    except _NotOk as e:
        raise GrafanaError(
            f"Grafana at {g.url} would not {'update' if exists else 'create'} data source "
            f"{uid}: HTTP {e.status}: {e.message}"
        ) from None


def _upsert_dashboard(g: _Api, name: str, dash: dict[str, Any], res: PushResult) -> dict[str, str]:
    """Step 4: one dashboard, saved when missing, different, or in another folder."""
    duid = dash["uid"]
    out = {"uid": duid, "title": dash["title"], "file": name}
    try:
        current = g.call(f"read dashboard {duid}", "GET", f"/dashboards/uid/{duid}")
    except _NotOk as e:
        if e.status != 404:
            raise GrafanaError(
                f"Grafana at {g.url}: reading dashboard {duid}: HTTP {e.status}: {e.message}"
            ) from None
        current = None
    if current is not None:
        meta = current.get("meta", {}) if isinstance(current, dict) else {}
        same = _comparable(current.get("dashboard", {})) == _comparable(dash)
        if same and (meta.get("folderUid") or None) == res.folder_uid:
            return {
                **out,
                "status": "unchanged",
                "url": g.origin + str(meta.get("url", f"/d/{duid}")),
            }
    body: dict[str, Any] = {
        "dashboard": {**dash, "id": None},
        "overwrite": True,
        "message": "netready dashboards push",
    }
    if res.folder_uid:
        body["folderUid"] = res.folder_uid
    try:
        saved = g.call(f"save dashboard {duid}", "POST", "/dashboards/db", json=body)
    except _NotOk as e:
        raise GrafanaError(
            f"Grafana at {g.url} would not save dashboard {duid} ({dash['title']}): "
            f"HTTP {e.status}: {e.message}"
        ) from None
    path = saved.get("url", f"/d/{duid}") if isinstance(saved, dict) else f"/d/{duid}"
    status = "updated" if current is not None else "created"
    return {**out, "status": status, "url": g.origin + str(path)}
