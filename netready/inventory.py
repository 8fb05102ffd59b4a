"""Load and validate ``site_inventory.yaml``.

Every problem becomes one line ``FILE:LINE:COL: path.to.field: what is wrong``; all of them
are reported together as an ``InventoryError`` (exit code 2), never a traceback.

Secrets are never inline: fields typed ``SecretRef`` accept only ``env:NAME`` or
``file:PATH`` and are resolved with ``.resolve()`` at the moment of use. ``repr`` and
``str`` of a ``SecretRef`` show the reference, never the value.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from netready.errors import InventoryError, SecretError

Tech = Literal["adsl", "fttc", "sogea", "fttp", "ethernet", "unknown"]
COPPER_TECHS: frozenset[str] = frozenset({"adsl", "fttc", "sogea"})
FIBRE_TECHS: frozenset[str] = frozenset({"fttp", "ethernet"})
SiteType = Literal["gp_practice", "hospital", "community", "diagnostic_centre"]
ODS_RE = re.compile(r"^[A-Z][A-Z0-9]{2,5}$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SecretRef(str):
    """A reference to a secret: ``env:NAME`` or ``file:PATH``. Resolve at use."""

    def resolve(self) -> str:
        kind, _, ref = self.partition(":")
        if kind == "env":
            try:
                return os.environ[ref]
            except KeyError:
                raise SecretError(f"secret {self}: environment variable {ref} is not set") from None
        try:
            return Path(ref).expanduser().read_text().strip()
        except OSError as e:
            raise SecretError(f"secret {self}: cannot read {ref}: {e.strerror}") from None

    @classmethod
    def check(cls, v: Any) -> SecretRef:
        if not isinstance(v, str):
            raise ValueError("a secret must be a reference string env:NAME or file:PATH")
        kind, sep, ref = v.partition(":")
        if not sep or kind not in ("env", "file") or not ref:
            raise ValueError(
                "secret given inline; write env:NAME or file:PATH so it stays out of the file"
            )
        if kind == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref):
            raise ValueError(f"env:{ref} is not a valid environment variable name")
        return cls(v)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret(v: Any) -> SecretRef:
    return SecretRef.check(v)


Secret = Annotated[SecretRef, PlainValidator(_secret), PlainSerializer(str)]


class StoreConfig(_Model):
    """Where results go. ``embedded``: the local spool database is the store."""

    kind: Literal["embedded", "influxdb_v1", "influxdb_v2"] = "embedded"
    url: str | None = None
    database: str = "netready"
    retention_policy: str | None = None
    username: Secret | None = None
    password: Secret | None = None
    token: Secret | None = None
    org: str | None = None
    bucket: str | None = None
    verify_tls: bool = True
    gzip: bool = True
    timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _needs_url(self) -> StoreConfig:
        if self.kind != "embedded" and not self.url:
            raise ValueError(f"store kind {self.kind} needs a url")
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError(f"store url must start with http:// or https://, got {self.url!r}")
        if self.kind == "influxdb_v2" and not (self.token and self.org and self.bucket):
            raise ValueError("store kind influxdb_v2 needs token, org and bucket")
        return self


class AgentConfig(_Model):
    spool_path: str = "netready-spool.db"
    spool_max_mb: float = Field(200.0, gt=0, le=100_000)
    spool_max_age_days: float = Field(30.0, gt=0, le=3650)
    ship_interval_s: float = Field(30.0, gt=0, le=86_400)
    batch_size: int = Field(5000, ge=1, le=100_000)
    splay_s: float = Field(30.0, ge=0, le=86_400)
    self_report_s: float = Field(
        300.0, gt=0, le=86_400, description="how often the agent writes its own `agent` record"
    )


class Link(_Model):
    tech: Tech
    down_mbps: float = Field(gt=0, le=100_000, description="contracted download, Mbit/s")
    up_mbps: float = Field(gt=0, le=100_000, description="contracted upload, Mbit/s")
    provider: str | None = None
    circuit_id: str | None = None
    wlr: bool = Field(False, description="line still on Wholesale Line Rental (PSTN)")


class SnmpConfig(_Model):
    version: Literal["2c", "3"] = "2c"
    port: int = Field(161, ge=1, le=65535)
    community: Secret | None = None
    user: str | None = None
    auth_protocol: Literal["sha", "sha256", "sha512", "md5"] = "sha"
    auth_key: Secret | None = None
    priv_protocol: Literal["aes", "aes256", "des"] = "aes"
    priv_key: Secret | None = None
    timeout_s: float = Field(2.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=10)

    @model_validator(mode="after")
    def _creds(self) -> SnmpConfig:
        if self.version == "2c" and not self.community:
            raise ValueError("SNMP v2c needs community (env:NAME or file:PATH)")
        if self.version == "3" and not (self.user and self.auth_key and self.priv_key):
            raise ValueError("SNMP v3 needs user, auth_key and priv_key (authPriv)")
        return self


class SshConfig(_Model):
    port: int = Field(22, ge=1, le=65535)
    username: str
    key_file: Secret
    known_hosts: str | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)


class Router(_Model):
    host: str
    vendor: Literal[
        "cisco_iosxe", "huawei_vrp", "draytek", "teldat", "zyxel", "oneaccess", "tplink", "generic"
    ] = "generic"
    wan_interface: str | None = Field(None, description="regex on ifName/ifAlias; auto if unset")
    snmp: SnmpConfig | None = None
    ssh: SshConfig | None = None


class ClinicHours(_Model):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]  # type: ignore[arg-type]
    )
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(18, 30)

    @model_validator(mode="after")
    def _order(self) -> ClinicHours:
        if self.end <= self.start:
            raise ValueError("clinic hours end must be after start")
        return self

    def contains(self, when: dt.datetime) -> bool:
        """Whether local time ``when`` falls in clinic hours."""
        return DAYS[when.weekday()] in self.days and self.start <= when.time() < self.end


class Target(_Model):
    """A probe target. ``probe`` names a registered probe; ``address`` is HOST:PORT or a URL."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    probe: str
    address: str
    interval_s: float | None = Field(None, gt=0, le=7 * 86_400)
    params: dict[str, Any] = Field(default_factory=dict)


class Budget(_Model):
    test_mb: float = Field(100.0, gt=0, le=100_000)
    daily_mb: float = Field(1000.0, gt=0, le=1_000_000)


class Site(_Model):
    ods: str
    name: str
    type: SiteType
    icb: str
    lat: float | None = Field(None, ge=49.0, le=61.0)
    lon: float | None = Field(None, ge=-9.0, le=2.5)
    registered_patients: int | None = Field(None, ge=0, le=2_000_000)
    link: Link
    router: Router | None = None
    planned_clinics: int = Field(1, ge=0, le=500)
    clinic_hours: ClinicHours = Field(default_factory=ClinicHours)
    targets: list[Target] = Field(default_factory=list)
    budget: Budget = Field(default_factory=lambda: Budget())

    @field_validator("ods")
    @classmethod
    def _ods(cls, v: str) -> str:
        if not ODS_RE.match(v):
            raise ValueError(
                f"{v!r} is not an ODS code (upper-case letter then 2-5 letters/digits, e.g. A81001)"
            )
        return v

    @property
    def tags(self) -> dict[str, str]:
        """The base tags every record from this site carries."""
        return {"site": self.ods, "icb": self.icb, "tech": self.link.tech}


class Defaults(_Model):
    targets: list[Target] = Field(default_factory=list)
    intervals_s: dict[str, float] = Field(
        default_factory=lambda: {
            "rtt": 300.0,
            "media": 3600.0,
            "throughput": 21600.0,
            "snmp": 60.0,
            "ssh": 3600.0,
        }
    )


class Inventory(_Model):
    version: Literal[1] = 1
    store: StoreConfig = Field(default_factory=lambda: StoreConfig())
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())
    defaults: Defaults = Field(default_factory=Defaults)
    sites: list[Site] = Field(min_length=1)

    def site(self, ods: str) -> Site:
        for s in self.sites:
            if s.ods == ods:
                return s
        raise InventoryError([f"no site with ODS code {ods} in the inventory"])

    def targets_for(self, site: Site) -> list[Target]:
        """The site's own targets, then defaults whose name the site does not override."""
        own = {t.name for t in site.targets}
        return [*site.targets, *(t for t in self.defaults.targets if t.name not in own)]


# ---------------------------------------------------------------- loading with positions

_Pos = tuple[int, int]


def _positions(
    node: yaml.Node,
    path: tuple[Any, ...],
    out: dict[tuple[Any, ...], _Pos],
    dupes: list[tuple[tuple[Any, ...], _Pos]],
) -> None:
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                dupes.append(((*path, key), (k.start_mark.line + 1, k.start_mark.column + 1)))
            seen.add(key)
            out[(*path, key, "__key__")] = (k.start_mark.line + 1, k.start_mark.column + 1)
            _positions(v, (*path, key), out, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _positions(v, (*path, i), out, dupes)


def _fmt_path(loc: tuple[Any, ...]) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(top)"


def _lookup(pos: dict[tuple[Any, ...], _Pos], loc: tuple[Any, ...], key: bool) -> _Pos:
    if key and (*loc, "__key__") in pos:
        return pos[(*loc, "__key__")]
    for n in range(len(loc), -1, -1):
        if loc[:n] in pos:
            return pos[loc[:n]]
    return (1, 1)


def load(path: str | os.PathLike[str]) -> Inventory:
    """Load and validate an inventory file; raise ``InventoryError`` with one line per problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError([f"{p}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError([f"{p}: cannot read: {e}"]) from None
    return loads(text, str(p))


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """One parse: the node tree (for line numbers) and the data built from it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def loads(text: str, filename: str = "<inventory>") -> Inventory:
    try:
        node, data = _parse(text)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        where = f"{filename}:{m.line + 1}:{m.column + 1}" if m else filename
        raise InventoryError([f"{where}: malformed YAML: {e.problem or e.context}"]) from None
    except yaml.YAMLError as e:
        raise InventoryError([f"{filename}: malformed YAML: {e}"]) from None
    if node is None or not isinstance(data, dict):
        raise InventoryError(
            [f"{filename}:1:1: the inventory must be a mapping with a 'sites' list"]
        )
    pos: dict[tuple[Any, ...], _Pos] = {}
    dupes: list[tuple[tuple[Any, ...], _Pos]] = []
    _positions(node, (), pos, dupes)
    problems = [
        f"{filename}:{ln}:{col}: {_fmt_path(loc)}: duplicate key" for loc, (ln, col) in dupes
    ]
    inv: Inventory | None = None
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            unknown = err["type"] == "extra_forbidden"
            ln, col = _lookup(pos, loc, key=unknown)
            msg = "unknown key (typo?)" if unknown else err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error":
                msg = f"{err['input']!r} is not one of {err['ctx']['expected']}"
            problems.append(f"{filename}:{ln}:{col}: {_fmt_path(loc)}: {msg}")
    if inv is not None:
        seen: dict[str, int] = {}
        for i, s in enumerate(inv.sites):
            if s.ods in seen:
                ln, col = _lookup(pos, ("sites", i, "ods"), key=False)
                problems.append(
                    f"{filename}:{ln}:{col}: sites[{i}].ods: duplicate ODS code {s.ods} "
                    f"(first at sites[{seen[s.ods]}])"
                )
            seen.setdefault(s.ods, i)
            for j, t in enumerate(inv.targets_for(s)):
                _check_address(t, filename, pos, ("sites", i, "targets", j), problems)
    if problems:
        raise InventoryError(problems)
    assert inv is not None
    return inv


def _check_address(
    t: Target,
    filename: str,
    pos: dict[tuple[Any, ...], _Pos],
    loc: tuple[Any, ...],
    problems: list[str],
) -> None:
    if "://" in t.address:
        return
    host, sep, port = t.address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        ln, col = _lookup(pos, (*loc, "address"), key=False)
        problems.append(
            f"{filename}:{ln}:{col}: {_fmt_path((*loc, 'address'))}: "
            f"{t.address!r} is not HOST:PORT or a URL"
        )


def split_hostport(address: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``host`` (with a default port) -> (host, port)."""
    a = address.strip()
    if a.startswith("["):
        host, _, rest = a[1:].partition("]")
        port_s = rest.lstrip(":")
    elif a.count(":") == 1:
        host, _, port_s = a.partition(":")
    else:
        host, port_s = a, ""
        try:
            ipaddress.ip_address(a)
        except ValueError:
            pass
    if not port_s:
        if default_port is None:
            raise ValueError(f"{address!r}: missing :PORT")
        return host, default_port
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"{address!r}: bad port {port_s!r}")
    return host, int(port_s)
