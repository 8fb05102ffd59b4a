"""Load and validate ``site_inventory.yaml``.

Every problem becomes one line ``FILE:LINE:COL: path.to.field: what is wrong``; all of them
are reported together as an ``InventoryError`` (exit code 2), never a traceback.

Hostile files are refused before they cost anything: the file must be a regular file of at
most ``INVENTORY_MAX_BYTES``; after parsing and before any Python object is built, the node
graph is walked once to refuse nesting deeper than ``MAX_DEPTH``, YAML aliases that would
expand the document beyond ``MAX_ALIAS_NODES`` extra nodes (the "billion laughs" bomb),
recursive aliases, integers longer than ``MAX_INT_DIGITS`` digits and control characters
in any string.

Secrets are never inline: fields typed ``SecretRef`` accept only ``env:NAME`` or
``file:PATH`` and are resolved with ``.resolve()`` at the moment of use. ``repr`` and
``str`` of a ``SecretRef`` show the reference, never the value. A resolved value must be
one line of printable characters (a trailing newline of a file is stripped); one that goes
into an HTTP header (``HeaderSecretRef``) must be printable ASCII; a key file
(``TextSecretRef``) may have several lines. A ``file:`` reference must name a regular file
of at most ``SECRET_FILE_MAX_BYTES`` of UTF-8 text. Errors name the reference, never the
value; ``redact`` removes resolved values and authorization header values from text that
came from elsewhere (a server's error body).
"""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

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

from netready.errors import ConfigError, InventoryError, SecretError

#: probe name -> its pydantic ``Spec`` (``registry.spec_for``); raises for an unknown probe.
SpecLookup = Callable[[str], type[BaseModel]]

Tech = Literal["adsl", "fttc", "sogea", "fttp", "ethernet", "unknown"]
COPPER_TECHS: frozenset[str] = frozenset({"adsl", "fttc", "sogea"})
FIBRE_TECHS: frozenset[str] = frozenset({"fttp", "ethernet"})
SiteType = Literal["gp_practice", "hospital", "community", "diagnostic_centre"]
ODS_RE = re.compile(r"^[A-Z][A-Z0-9]{2,5}$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Largest secret file (a 16384-bit RSA key in PEM is about 13 KiB).
SECRET_FILE_MAX_BYTES = 64 * 1024
#: Largest inventory file (England's ~6,300 GP practices at ~1 KiB each is ~7 MB).
INVENTORY_MAX_BYTES = 32 * 1024 * 1024
#: Deepest nesting of mappings and lists (a real inventory needs about 8).
MAX_DEPTH = 64
#: Most nodes YAML aliases may add to the document by expansion (a real inventory that
#: shares a link or router block between sites adds a few thousand).
MAX_ALIAS_NODES = 100_000
#: Longest integer (Python refuses to convert more than 4,300 digits).
MAX_INT_DIGITS = 100


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Never blocks on a FIFO and never reads a device or a directory: ``ValueError`` with a
    short reason ("is a directory", "is not a regular file (a FIFO)", "is larger than
    64 KiB") for those, ``OSError`` when the file cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(_not_regular(st.st_mode))
        if st.st_size > limit:
            raise ValueError(f"is larger than {_size(limit)} ({st.st_size:,} bytes)")
        chunks, got = [], 0
        while got <= limit:
            b = os.read(fd, limit + 1 - got)
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got > limit:
            raise ValueError(f"is larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    what = next((name for test, name in kinds if test(mode)), "not a plain file")
    return f"is not a regular file ({what})"


def _size(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n >= 1 << 20 else f"{n // 1024} KiB"


_RESOLVED: set[str] = set()  # secret values resolved in this process, for redact()
_AUTH_VALUE = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|token|basic|digest)\s+)?[^\s\"',;]+"
)


def redact(text: str) -> str:
    """``text`` with every secret value resolved in this process, and the credential of an
    echoed ``Authorization`` header (``Authorization: Basic x``, ``"authorization": "Token
    x"``), replaced by ``<redacted>``. For text that came from elsewhere (an HTTP error body
    that may echo our request headers) before it goes into a message."""
    for v in sorted(_RESOLVED, key=len, reverse=True):
        if v in text:
            text = text.replace(v, "<redacted>")
    return _AUTH_VALUE.sub(r"\1\2<redacted>", text)


class SecretRef(str):
    """A reference to a secret: ``env:NAME`` or ``file:PATH``. Resolve at use.

    The resolved value must be one line of printable characters; subclasses tighten
    (``HeaderSecretRef``: printable ASCII) or loosen (``TextSecretRef``: several lines).
    """

    #: "line": one line, no control characters; "header": printable ASCII (it goes into an
    #: HTTP header); "text": several lines (a PEM key), no other control characters.
    form: ClassVar[str] = "line"

    def resolve(self) -> str:
        kind, _, ref = self.partition(":")
        if kind == "env":
            value = os.environ.get(ref)
            if value is None:
                raise SecretError(f"secret {self}: environment variable {ref} is not set")
        else:
            value = self._read_file(Path(ref).expanduser())
        self._check_value(value)
        if len(value) >= 4:
            _RESOLVED.add(value)
        return value

    def _read_file(self, path: Path) -> str:
        try:
            data = read_regular_file(path, SECRET_FILE_MAX_BYTES)
        except OSError as e:
            raise SecretError(f"secret {self}: cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise SecretError(f"secret {self}: {path} {e}") from None
        if b"\0" in data:
            raise SecretError(f"secret {self}: {path} holds binary data (a NUL byte), not text")
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise SecretError(
                f"secret {self}: {path} is not UTF-8 text (bad byte at offset {e.start})"
            ) from None

    def _check_value(self, value: str) -> None:
        """Refuse a value that would break or smuggle into where it goes; the message
        names the reference and the kind of character, never the value."""
        if not value:
            raise SecretError(f"secret {self}: the value is empty")
        allowed = "\n\r\t" if self.form == "text" else ""
        for c in value:
            if c in allowed:
                continue
            if c in "\n\r\u2028\u2029\x85":
                raise SecretError(
                    f"secret {self}: the value has a line break inside; a secret is one line "
                    "(only a trailing newline at the end of a file is allowed)"
                )
            if unicodedata.category(c) == "Cc":
                raise SecretError(
                    f"secret {self}: the value has a control character (U+{ord(c):04X}); "
                    "a secret is printable text"
                )
            if self.form == "header" and not " " <= c <= "~":
                raise SecretError(
                    f"secret {self}: the value has a non-ASCII character; it goes into an "
                    "HTTP header, which carries printable ASCII only"
                )

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
            raise ValueError("env:NAME needs a valid environment variable name")
        return cls(v)


class HeaderSecretRef(SecretRef):
    """A secret that goes into an HTTP header (a bearer or InfluxDB token): printable ASCII."""

    form = "header"


class TextSecretRef(SecretRef):
    """A secret of several lines (an SSH private key in PEM)."""

    form = "text"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Secret = Annotated[SecretRef, PlainValidator(SecretRef.check), PlainSerializer(str)]
HeaderSecret = Annotated[
    HeaderSecretRef, PlainValidator(HeaderSecretRef.check), PlainSerializer(str)
]
TextSecret = Annotated[TextSecretRef, PlainValidator(TextSecretRef.check), PlainSerializer(str)]


class StoreConfig(_Model):
    """Where results go. ``embedded``: the local spool database is the store."""

    kind: Literal["embedded", "influxdb_v1", "influxdb_v2"] = "embedded"
    url: str | None = None
    database: str = "netready"
    retention_policy: str | None = None
    username: Secret | None = None
    password: Secret | None = None
    token: HeaderSecret | None = None
    org: str | None = None
    bucket: str | None = None
    verify_tls: bool = True
    gzip: bool = True
    timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _needs_url(self) -> StoreConfig:
        if self.kind != "embedded" and not self.url:
            raise ValueError(f"store kind {self.kind} needs a url")
        if self.url:
            _check_store_url(self.url)
        if self.kind == "influxdb_v2" and not (self.token and self.org and self.bucket):
            raise ValueError("store kind influxdb_v2 needs token, org and bucket")
        return self


def _check_store_url(url: str) -> None:
    """A base URL without credentials; the messages never echo a URL that may carry one."""
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("store url is not a valid URL") from None
    if "@" in u.netloc:
        raise ValueError(
            "store url carries credentials (user:password@); give them as store.username "
            "and store.password (or store.token) as env:NAME or file:PATH"
        )
    if u.query or u.fragment:
        raise ValueError(
            "store url must be the server's base URL, without ?query or #fragment "
            "(credentials go in store.username/password/token as env:NAME or file:PATH)"
        )
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"store url must start with http:// or https://, got {url!r}")


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
    config_poll_s: float = Field(
        300.0,
        ge=1,
        le=86_400,
        description="how often an agent that follows a config server (--config-url) asks "
        "for a changed slice",
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
    """The router's SSH login: a private key (``key_file``), a password (``password``, for
    CPE with no key login), or both (the key is tried first); each a secret reference
    (``env:NAME`` / ``file:PATH``), never inline."""

    port: int = Field(22, ge=1, le=65535)
    username: str
    key_file: TextSecret | None = None
    password: Secret | None = None
    known_hosts: str | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _some_credential(self) -> SshConfig:
        if self.key_file is None and self.password is None:
            raise ValueError(
                "give key_file or password (a secret reference: env:NAME or file:PATH)"
            )
        return self


class Router(_Model):
    host: str
    vendor: Literal[
        "cisco_iosxe",
        "cisco_ios",
        "huawei_vrp",
        "draytek",
        "teldat",
        "zyxel",
        "oneaccess",
        "tplink",
        "generic",
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

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            # YAML 1.1 reads 18:30 unquoted as the base-60 number 1110
            raise ValueError('write the time in quotes, e.g. "18:30"')
        return v

    @field_validator("start", "end")
    @classmethod
    def _local(cls, v: dt.time) -> dt.time:
        if v.tzinfo is not None:
            raise ValueError("clinic hours are the site's local time: no UTC offset")
        return v

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

    def spec_params(self) -> dict[str, Any]:
        """What the probe's ``Spec`` is built from: the address as ``target``, then params."""
        return {"target": self.address, **self.params}


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
    intervals_s: dict[str, Annotated[float, Field(gt=0, le=7 * 86_400)]] = Field(
        default_factory=dict,
        description="interval per probe/collector name, seconds; overrides the interval the "
        "plugin declares",
    )

    def interval_for(self, plugin: str, declared: float) -> float:
        """The interval of a plugin's tasks: this inventory's override, else ``declared``."""
        return self.intervals_s.get(plugin, declared)


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


# ---------------------------------------------------------------- slices (fleet configuration)


def slice_doc(inv: Inventory, ods: str) -> dict[str, Any]:
    """One site's slice of the inventory, as a document: the store and agent settings, the
    defaults the site uses (the default targets it does not override, the intervals) and the
    site itself. It carries no other site's name, router, circuit, targets or secret
    references. Only what was written in the inventory is kept (``exclude_unset``): the agent
    applies its own defaults, as it would to the whole file."""
    site = inv.site(ods)
    own = {t.name for t in site.targets}

    def dumped(m: BaseModel) -> dict[str, Any]:
        return m.model_dump(mode="json", exclude_unset=True)

    defaults: dict[str, Any] = {}
    used = [dumped(t) for t in inv.defaults.targets if t.name not in own]
    if used:
        defaults["targets"] = used
    if inv.defaults.intervals_s:
        defaults["intervals_s"] = dict(inv.defaults.intervals_s)
    return {
        "version": inv.version,
        "store": dumped(inv.store),
        "agent": dumped(inv.agent),
        "defaults": defaults,
        "sites": [dumped(site)],
    }


def slice_bytes(inv: Inventory, ods: str) -> bytes:
    """A site's slice as the bytes the config server serves and ``inventory slice`` writes
    (YAML, an inventory of one site: ``netready inventory check`` and the agent read it like
    any inventory). The same inventory gives the same bytes, so the ETag changes only when
    the slice does."""
    head = (
        f"# netready configuration slice for site {ods}: generated, do not edit (edit the\n"
        "# estate inventory and publish again). Signed with ed25519: docs/fleet.md.\n"
    )
    body = yaml.safe_dump(
        slice_doc(inv, ods), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return (head + body).encode("utf-8")


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
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
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


def _short(v: Any, limit: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 5] + "...'"


def load(path: str | os.PathLike[str], *, spec_for: SpecLookup | None = None) -> Inventory:
    """Load and validate an inventory file; raise ``InventoryError`` with one line per problem.

    ``spec_for`` (probe name -> its ``Spec``; ``registry.spec_for`` is the usual one) also
    validates every target's ``params`` against its probe's ``Spec`` (``netready inventory
    check`` does; it imports the probe modules). The inventory itself knows no plugin.
    """
    p = Path(path)
    try:
        data = read_regular_file(p, INVENTORY_MAX_BYTES)
    except FileNotFoundError:
        raise InventoryError([f"{p}: file not found"]) from None
    except OSError as e:
        raise InventoryError([f"{p}: cannot read: {e.strerror}"]) from None
    except ValueError as e:
        raise InventoryError([f"{p}: {e}; not an inventory"]) from None
    if b"\0" in data:
        raise InventoryError(
            [f"{p}: holds binary data (a NUL byte at offset {data.index(0)}), not YAML text"]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InventoryError([f"{p}: is not UTF-8 text (bad byte at offset {e.start})"]) from None
    return loads(text, str(p), spec_for=spec_for)


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x

_TAG = "tag:yaml.org,2002:"
#: The tags SafeLoader knows; anything else (``!!python/object``, ``!custom``) is refused.
_SAFE_TAGS = frozenset(
    _TAG + t
    for t in ("null", "bool", "int", "float", "binary", "timestamp", "omap", "pairs", "set",
              "str", "seq", "map", "merge", "value")
)  # fmt: skip
#: Scalar tags whose construction can fail on a bad value (ValueError, KeyError): checked
#: in the event pass so that the failure is a field error with a position.
_CHECKED_SCALARS = frozenset(_TAG + t for t in ("int", "float", "bool", "timestamp"))
_CTRL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: first characters of a plain scalar that may resolve to a number, a bool or a timestamp
_NUMERIC = frozenset("0123456789+-.")
_INT = _TAG + "int"


class _Frame:
    __slots__ = ("anchor", "height", "index", "is_map", "key", "nodes", "want_key")

    def __init__(self, anchor: str | None, is_map: bool):
        self.anchor = anchor
        self.is_map = is_map
        self.nodes = 1
        self.height = 1
        self.index = 0
        self.want_key = True
        self.key: Any = None


class _Vet:
    """The state of one vetting pass (``_vet``): the open collections, the expansion size of
    every anchor so far, the extra nodes aliases have added. ``run`` takes the scalars, most
    of the events, itself (kept short: it is the hot path of a 7,000-site inventory); one
    method per other kind of event, each returning the first problem or None."""

    __slots__ = ("extra", "filename", "loader", "resolve", "sizes", "stack", "top")

    def __init__(self, loader: Any, filename: str):
        self.filename = filename
        self.stack: list[_Frame] = []
        self.sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height) expanded
        self.extra = 0
        self.top: _Frame | None = None
        self.loader = loader
        self.resolve = loader.resolve

    def where(self, ev: Any) -> str:
        loc: list[Any] = []
        for f in self.stack:
            if f.is_map:
                if f.want_key:
                    break
                loc.append(f.key)
            else:
                loc.append(f.index)
        m = ev.start_mark
        path = _fmt_path(tuple(loc))
        if len(path) > 100:
            path = path[:60] + "..." + path[-30:]
        return f"{self.filename}:{m.line + 1}:{m.column + 1}: {path}"

    def run(self, get_event: Any) -> str | None:
        """Every event of the document; the first problem, or None."""
        handlers = {
            yaml.SequenceStartEvent: self.start,
            yaml.MappingStartEvent: self.start,
            yaml.SequenceEndEvent: self.end,
            yaml.MappingEndEvent: self.end,
            yaml.AliasEvent: self.alias,
        }.get
        scalar, node, resolve, ctrl = yaml.ScalarEvent, yaml.ScalarNode, self.resolve, _CTRL.search
        safe, numeric, checked, construct = _SAFE_TAGS, _NUMERIC, _CHECKED_SCALARS, self.construct
        top = None
        while True:
            ev = get_event()
            if ev is None:
                return None
            if ev.__class__ is not scalar:
                handler = handlers(ev.__class__)
                problem = handler(ev) if handler is not None else None
                if problem:
                    return problem
                top = self.top
                continue
            v, tag = ev.value, ev.tag  # scalars, most of the events: kept short
            if tag is not None and tag != "!":
                if tag not in safe:
                    return f"{self.where(ev)}: YAML tag {tag.replace(_TAG, '!!')} is not allowed"
            elif ev.implicit[0] and v and v[0] in numeric:
                tag = resolve(node, v, ev.implicit)
            m = ctrl(v)
            if m:
                c = ord(m.group())
                return f"{self.where(ev)}: has a control character (U+{c:04X}); write plain text"
            if tag in checked:
                problem = construct(v, tag)
                if problem:
                    return f"{self.where(ev)}: {problem}"
            if ev.anchor:
                self.sizes[ev.anchor] = (1, 1)
            if top is not None:  # done(1, 1), inlined: most nodes are scalars
                top.nodes += 1
                if top.height < 2:
                    top.height = 2
                if top.is_map:
                    if top.want_key:
                        top.key = v
                    top.want_key = not top.want_key
                else:
                    top.index += 1

    def construct(self, v: str, tag: str) -> str | None:
        """Why a scalar would fail to construct (too many digits, 2024-13-45), or None."""
        if tag == _INT and len(v) > MAX_INT_DIGITS:
            return f"a number of {len(v):,} characters is not a value here"
        try:
            self.loader.yaml_constructors[tag](self.loader, yaml.ScalarNode(tag, v))
        except (ValueError, KeyError, TypeError, OverflowError, yaml.YAMLError):
            return f"{_short(v)} is not a valid {tag.replace(_TAG, '')}"
        return None

    def done(self, nodes: int, height: int) -> None:
        """A collection or an alias ends the current key or item of the one around it."""
        top = self.top
        if top is None:
            return
        top.nodes += nodes
        if top.height <= height:
            top.height = height + 1
        if top.is_map:
            if top.want_key:
                top.key = "?"  # a collection as a key
            top.want_key = not top.want_key
        else:
            top.index += 1

    def start(self, ev: Any) -> str | None:
        if ev.tag is not None and ev.tag != "!" and ev.tag not in _SAFE_TAGS:
            return f"{self.where(ev)}: YAML tag {ev.tag.replace(_TAG, '!!')} is not allowed"
        if len(self.stack) >= MAX_DEPTH:
            return f"{self.where(ev)}: nested deeper than {MAX_DEPTH} levels"
        self.top = _Frame(ev.anchor, ev.__class__ is yaml.MappingStartEvent)
        self.stack.append(self.top)
        return None

    def end(self, ev: Any) -> str | None:
        f = self.stack.pop()
        if f.anchor:
            self.sizes[f.anchor] = (f.nodes, f.height)
        self.top = self.stack[-1] if self.stack else None
        self.done(f.nodes, f.height)
        return None

    def alias(self, ev: Any) -> str | None:
        got = self.sizes.get(ev.anchor or "")
        if got is None:
            open_ = any(f.anchor == ev.anchor for f in self.stack)
            what = "refers to itself (a recursive alias)" if open_ else "is not defined"
            return f"{self.where(ev)}: YAML alias *{ev.anchor} {what}"
        nodes, height = got
        self.extra += nodes
        if self.extra > MAX_ALIAS_NODES:
            return (
                f"{self.where(ev)}: YAML aliases expand to more than {MAX_ALIAS_NODES:,} extra "
                f"nodes (an alias bomb?); refused"
            )
        if len(self.stack) + height > MAX_DEPTH:
            return f"{self.where(ev)}: nested deeper than {MAX_DEPTH} levels (through *{ev.anchor})"
        self.done(nodes, height)
        return None


def _vet(loader: Any, filename: str) -> str | None:
    """One pass over the YAML events, before any node or Python object is built.

    Returns the first problem as a ``file:line:col: path: what`` line, or None. Counts what
    every alias would expand to (nodes and nesting height of its anchor) so that an alias
    bomb is refused in time linear in the file, refuses recursive and undefined aliases,
    nesting deeper than ``MAX_DEPTH``, tags outside the safe set, control characters in
    strings and scalars that would fail to construct (a 5,000-digit integer, 2024-13-45).
    """
    return _Vet(loader, filename).run(loader.get_event)


def _parse(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """Vet the events, then one parse: the node tree (for line numbers) and the data."""
    loader = _Loader(text)
    try:
        problem = _vet(loader, filename)
    finally:
        loader.dispose()
    if problem:
        raise InventoryError([problem])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def _yaml_problem(e: yaml.YAMLError, text: str, filename: str) -> str:
    """One line for a YAML syntax error (PyYAML's own messages span several lines)."""
    if isinstance(e, yaml.MarkedYAMLError):
        m = e.problem_mark or e.context_mark
        where = f"{filename}:{m.line + 1}:{m.column + 1}" if m else filename
        what = e.problem or e.context
    elif isinstance(e, yaml.reader.ReaderError):
        at = max(0, min(e.position, len(text)))
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        where, what = f"{filename}:{line}:{col}", f"character #x{e.character:04x}: {e.reason}"
    else:
        where, what = filename, (str(e).splitlines() or [type(e).__name__])[0]
    return f"{where}: malformed YAML: {' '.join(str(what).split())}"


def loads(
    text: str, filename: str = "<inventory>", *, spec_for: SpecLookup | None = None
) -> Inventory:
    """Validate inventory text; ``InventoryError`` with one ``file:line:col`` line per problem.

    The cyclic garbage collector is paused meanwhile: loading builds hundreds of thousands of
    small objects and no cycles worth collecting, and its passes were half the time of a
    7,000-site load."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _loads(text, filename, spec_for=spec_for)
    finally:
        if enabled:
            gc.enable()


def _loads(text: str, filename: str, *, spec_for: SpecLookup | None) -> Inventory:
    try:
        node, data = _parse(text, filename)
    except yaml.YAMLError as e:
        raise InventoryError([_yaml_problem(e, text, filename)]) from None
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError, MemoryError) as e:
        # the event pass catches every case we know; this is the guard for the rest
        what = (str(e).splitlines() or [""])[0][:200]
        raise InventoryError(
            [f"{filename}: cannot read a value: {type(e).__name__} {what}"]
        ) from None
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
        problems += [_field_problem(filename, pos, tuple(err["loc"]), err) for err in e.errors()]
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
        places: list[tuple[tuple[Any, ...], Target]] = [
            (("defaults", "targets", k), t) for k, t in enumerate(inv.defaults.targets)
        ]
        for i, s in enumerate(inv.sites):
            places += [(("sites", i, "targets", j), t) for j, t in enumerate(s.targets)]
        for loc, t in places:
            address_ok = _check_address(t, filename, pos, loc, problems)
            if spec_for is not None:
                _check_params(spec_for, t, address_ok, filename, pos, loc, problems)
    if problems:
        raise InventoryError(problems)
    assert inv is not None
    return inv


def _field_problem(
    filename: str, pos: dict[tuple[Any, ...], _Pos], loc: tuple[Any, ...], err: Any
) -> str:
    unknown = err["type"] == "extra_forbidden"
    ln, col = _lookup(pos, loc, key=unknown)
    msg = "unknown key (typo?)" if unknown else err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error":
        msg = f"{_short(err['input'])} is not one of {err['ctx']['expected']}"
    return f"{filename}:{ln}:{col}: {_fmt_path(loc)}: {msg}"


def _check_params(
    spec_for: SpecLookup,
    t: Target,
    address_ok: bool,
    filename: str,
    pos: dict[tuple[Any, ...], _Pos],
    loc: tuple[Any, ...],
    problems: list[str],
) -> None:
    """Validate a target's ``params`` (and address) with its probe's ``Spec``, as the agent
    will (``registry.Plugin.make_spec``), so that the errors carry file:line:col."""
    try:
        spec = spec_for(t.probe)
    except (ConfigError, ImportError) as e:
        ln, col = _lookup(pos, (*loc, "probe"), key=False)
        problems.append(f"{filename}:{ln}:{col}: {_fmt_path((*loc, 'probe'))}: {e}")
        return
    try:
        spec.model_validate(t.spec_params())
    except ValidationError as e:
        for err in e.errors():
            eloc = tuple(err["loc"])
            if eloc[:1] == ("target",) and "target" not in t.params:
                if not address_ok:
                    continue  # already reported by _check_address
                where = (*loc, "address", *eloc[1:])
            else:
                where = (*loc, "params", *eloc) if eloc else loc
            problems.append(_field_problem(filename, pos, where, err))


def _check_address(
    t: Target,
    filename: str,
    pos: dict[tuple[Any, ...], _Pos],
    loc: tuple[Any, ...],
    problems: list[str],
) -> bool:
    ln, col = _lookup(pos, (*loc, "address"), key=False)
    at = f"{filename}:{ln}:{col}: {_fmt_path((*loc, 'address'))}"
    if "://" in t.address:
        if "@" in urlsplit(t.address).netloc:
            problems.append(
                f"{at}: the URL carries credentials (user:password@); give secrets as "
                "params (env:NAME or file:PATH)"
            )
            return False
        return True
    try:
        host, _ = split_hostport(t.address, 0)  # the port, if any, must be 1-65535
    except ValueError:
        host = ""
    if not host or any(c.isspace() for c in host):
        problems.append(f"{at}: {_short(t.address)} is not HOST, HOST:PORT or a URL")
        return False
    return True  # whether this probe needs a port is its Spec's business (check_targets)


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
