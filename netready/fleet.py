"""Fleet configuration: a site agent that follows its own signed slice of the inventory.

The pSConfig / Telegraf ``--config URL`` convention. ``netready-agent --config-url URL
--config-key FILE --site ODS`` takes its configuration from ``URL/sites/ODS`` (what
``netready config serve`` publishes; ``netready inventory slice`` writes the same bytes as
files for estates that distribute them with their own tools) instead of a local inventory:

- it fetches only its own site's slice, with ``If-None-Match`` (the ``ETag`` of the copy it
  runs), every ``agent.config_poll_s`` (the slice says; default 300 s);
- the slice is signed with ed25519 (PyNaCl, libsodium): the signature covers the exact bytes
  served and travels in the ``X-Netready-Signature`` header (base64), or in ``FILE.sig``
  beside an exported file. The public key is installed with the agent (``--config-key``), so
  a proxy on the path, or a server that is not ours, cannot redirect the probes;
- a slice with a bad signature, that does not parse, that is not a valid inventory, that is
  for another site or whose tasks do not build keeps the last good copy: an ERROR line with
  the reason, counted in ``config_errors`` (the ``agent`` record);
- the last good copy is kept on disk (``STATE_DIR/config/``: the bytes, the signature and
  the ETag, each written atomically) and the agent starts from it when the server is
  unreachable (a WARNING, counted in ``config_unreachable``); the copy is verified again
  when read, as if it had just been fetched;
- a changed slice is applied without a restart: the agent rebuilds its tasks between runs
  (a running task finishes with the spec it started with). The store and the spool are
  opened once: a change to them applies when the agent next starts (a WARNING says so).

Sans-IO where it can be (``sign``, ``verify``, ``check_slice``); the HTTP edge is
``Follower.fetch`` (httpx).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from netready.errors import ConfigError, InventoryError, NetreadyError
from netready.inventory import Inventory, SecretRef, loads, read_regular_file

log = logging.getLogger("netready.fleet")

#: The response header (and the ``.sig`` file's content) carrying the detached signature.
SIG_HEADER = "X-Netready-Signature"
#: Largest slice accepted (a site's slice is a few KiB).
SLICE_MAX_BYTES = 1 << 20
#: Seconds a fetch may take, connect to last byte.
FETCH_TIMEOUT_S = 10.0
KEY_BYTES = 32


class FleetError(NetreadyError):
    """No configuration to run from: the server is unreachable and there is no last good
    copy (exit 1: systemd retries)."""


class SliceError(NetreadyError):
    """A slice that must not be used: a bad signature, not UTF-8, not a valid inventory,
    another site's. The message says which, never the slice's content."""


# ----------------------------------------------------------------------------- keys


def _b64(text: str, what: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what}: not base64") from None
    if len(raw) != size:
        raise ConfigError(f"{what}: {len(raw)} bytes; an ed25519 key is {size}")
    return raw


def generate_keypair() -> tuple[str, str]:
    """(private, public): a new ed25519 key pair, each one line of base64 (the private one
    is the 32-byte seed)."""
    from nacl.signing import SigningKey

    sk = SigningKey.generate()
    return (
        base64.b64encode(bytes(sk)).decode(),
        base64.b64encode(bytes(sk.verify_key)).decode(),
    )


def write_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """``netready config keygen``: write a new key pair (the private file mode 0600, never
    overwriting either file). Returns the public key."""
    priv, pub = generate_keypair()
    for p in (private_path, public_path):
        if Path(p).exists():
            raise ConfigError(f"{p}: exists; not overwritten (remove it first)")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(priv + "\n")
    Path(public_path).write_text(pub + "\n")
    return pub


def signing_key(ref: str) -> bytes:
    """The private key (32-byte seed) behind a reference (``file:PATH`` or ``env:NAME``; never
    inline): base64 of the seed."""
    try:
        secret = SecretRef.check(ref)
    except ValueError as e:
        raise ConfigError(f"--signing-key: {e}") from None
    return _b64(secret.resolve(), f"signing key {secret}", KEY_BYTES)


def public_key(path: str | Path) -> bytes:
    """The public key installed with the agent: a file of one base64 line."""
    p = Path(path)
    try:
        text = read_regular_file(p, 4096).decode("ascii", "replace")
    except FileNotFoundError:
        raise ConfigError(f"--config-key {p}: file not found") from None
    except OSError as e:
        raise ConfigError(f"--config-key {p}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"--config-key {p}: {e}") from None
    return _b64(text, f"--config-key {p}", KEY_BYTES)


# ----------------------------------------------------------------------------- sans-IO


def sign(data: bytes, seed: bytes) -> str:
    """The detached signature of ``data``: base64 of the 64-byte ed25519 signature."""
    from nacl.signing import SigningKey

    return base64.b64encode(SigningKey(seed).sign(data).signature).decode()


def verify(data: bytes, signature: str | None, key: bytes) -> None:
    """``SliceError`` unless ``signature`` (base64) is ``key``'s signature of exactly
    ``data``."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if not signature:
        raise SliceError("no signature (the slice is unsigned)")
    try:
        sig = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SliceError("the signature is not base64") from None
    if len(sig) != 64:
        raise SliceError(f"the signature is {len(sig)} bytes; ed25519 signs with 64")
    try:
        VerifyKey(key).verify(data, sig)
    except BadSignatureError:
        raise SliceError("bad signature (not signed by the key installed with the agent)") from None


def etag(data: bytes) -> str:
    """The strong ETag of a slice: its SHA-256, quoted."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def check_slice(data: bytes, signature: str | None, key: bytes, site: str, where: str) -> Inventory:
    """A slice as the agent will run it: signed by ``key``, UTF-8, a valid inventory with
    exactly one site, ``site``. ``SliceError`` naming what is wrong (``where`` is the URL or
    file, used in messages)."""
    verify(data, signature, key)
    if len(data) > SLICE_MAX_BYTES:
        raise SliceError(f"{len(data):,} bytes, more than a slice may be")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SliceError(f"not UTF-8 text (bad byte at offset {e.start})") from None
    try:
        inv = loads(text, where)
    except InventoryError as e:
        first = e.problems[0] if e.problems else str(e)
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        raise SliceError(f"not a valid inventory: {first}{more}") from None
    codes = [s.ods for s in inv.sites]
    if codes != [site]:
        raise SliceError(f"the slice is for site {', '.join(codes)}, not this agent's site {site}")
    return inv


# ----------------------------------------------------------------------------- the copy on disk


@dataclass(frozen=True)
class Copy:
    """A slice as fetched: its bytes, its signature and its ETag."""

    data: bytes
    signature: str
    etag: str


class LastGood:
    """The last good copy on disk (``DIR/slice.yaml``, ``slice.yaml.sig``, ``slice.etag``);
    each file written to a temporary name, fsynced and renamed, so a power cut leaves the old
    copy or the new one, never half of one."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.data_path = self.dir / "slice.yaml"
        self.sig_path = self.dir / "slice.yaml.sig"
        self.etag_path = self.dir / "slice.etag"

    def load(self) -> Copy | None:
        try:
            data = read_regular_file(self.data_path, SLICE_MAX_BYTES)
            sig = read_regular_file(self.sig_path, 4096).decode("ascii", "replace").strip()
        except (OSError, ValueError):
            return None
        try:
            tag = read_regular_file(self.etag_path, 4096).decode("ascii", "replace").strip()
        except (OSError, ValueError):
            tag = etag(data)
        return Copy(data, sig, tag)

    def save(self, c: Copy) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # the signature first: a cut between the two leaves a pair that fails to verify
        # (and is refused at the next start) rather than a new slice under an old signature
        for path, content in (
            (self.sig_path, c.signature.encode() + b"\n"),
            (self.data_path, c.data),
            (self.etag_path, c.etag.encode() + b"\n"),
        ):
            _atomic_write(path, content)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- publishing


@dataclass(frozen=True)
class Answer:
    """What the config server sends for one request (the HTTP edge writes it out)."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Published:
    """Every site's slice of one inventory, signed: ODS -> Copy."""

    slices: dict[str, Copy]
    sites: int

    @classmethod
    def build(cls, inv: Inventory, seed: bytes) -> Published:
        from netready.inventory import slice_bytes

        out = {}
        for s in inv.sites:
            data = slice_bytes(inv, s.ods)
            out[s.ods] = Copy(data, sign(data, seed), etag(data))
        return cls(out, len(out))


class Publisher:
    """The config server's logic, sans-IO: the inventory's slices, signed, rebuilt when the
    inventory file changes (checked at most every ``recheck_s``; an inventory that no longer
    loads keeps the slices in force and logs an ERROR), and the answer to
    ``GET /sites/ODS`` with ``If-None-Match``."""

    def __init__(self, inventory_path: str | Path, seed: bytes, recheck_s: float = 2.0):
        self.path = Path(inventory_path)
        self.seed = seed
        self.recheck_s = recheck_s
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self.published = self._load()  # a bad inventory at start: InventoryError, exit 2

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> Published:
        from netready.inventory import load

        stamp = self._file_stamp()
        pub = Published.build(load(self.path), self.seed)
        self._stamp = stamp
        return pub

    def refresh(self, now: float | None = None) -> None:
        """Rebuild the slices if the inventory file changed since they were built."""
        now = time.monotonic() if now is None else now
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        if self._file_stamp() == self._stamp:
            return
        try:
            self.published = self._load()
        except NetreadyError as e:
            self._stamp = self._file_stamp()  # not again until the file changes again
            log.error(
                "inventory %s changed but cannot be published: %s; serving the slices built before",
                self.path,
                str(e).splitlines()[0],
                extra={"reason": str(e).splitlines()[0]},
            )
            return
        log.info("inventory %s reloaded: %d slices", self.path, self.published.sites)

    def answer(self, method: str, path: str, if_none_match: str | None) -> Answer:
        """The answer to one request. Only ``GET``/``HEAD /sites/ODS``; 304 when
        ``If-None-Match`` names the current ETag."""
        if method not in ("GET", "HEAD"):
            return Answer(405, {"Allow": "GET, HEAD"})
        ods = path.removeprefix("/sites/") if path.startswith("/sites/") else None
        c = self.published.slices.get(ods or "")
        if c is None:
            return Answer(404, {})
        headers = {"ETag": c.etag, "Cache-Control": "no-cache"}
        if if_none_match is not None and c.etag in {t.strip() for t in if_none_match.split(",")}:
            return Answer(304, headers)
        headers |= {SIG_HEADER: c.signature, "Content-Type": "application/yaml; charset=utf-8"}
        return Answer(200, headers, b"" if method == "HEAD" else c.data)


def export(
    inventory_path: str | Path,
    signing_key_ref: str,
    out_dir: str | Path,
    sites: list[str] | None = None,
) -> list[Path]:
    """``netready inventory slice``: write each site's slice (all, or ``sites``) as
    ``DIR/ODS.yaml`` with its signature beside it (``DIR/ODS.yaml.sig``), for estates that
    distribute files with their own tools. Returns the files written."""
    from netready.inventory import load, slice_bytes

    inv = load(inventory_path)
    seed = signing_key(signing_key_ref)
    codes = sites or [s.ods for s in inv.sites]
    for ods in codes:
        inv.site(ods)  # an unknown code: InventoryError before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ods in codes:
        data = slice_bytes(inv, ods)
        for path, content in ((out / f"{ods}.yaml.sig", sign(data, seed).encode() + b"\n"),
                              (out / f"{ods}.yaml", data)):  # fmt: skip
            _atomic_write(path, content)
            written.append(path)
    return written


def _atomic_write(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- following


def slice_url(base: str, site: str) -> str:
    """``BASE/sites/ODS``: where ``netready config serve`` publishes a site's slice."""
    u = urlsplit(base)
    if not base.lower().startswith(("https://", "http://")) or not u.hostname:
        raise ConfigError(f"--config-url {base!r}: must start with https:// (or http://)")
    if "@" in u.netloc or u.query or u.fragment:
        raise ConfigError(f"--config-url {base!r}: the server's base URL, no credentials or ?query")
    return base.rstrip("/") + f"/sites/{site}"


@dataclass
class Counters:
    """What the follower counts (fields of the ``agent`` record)."""

    config_errors: int = 0  # slices refused (bad signature, invalid, another site's)
    config_unreachable: int = 0  # fetches that failed (server down, timeout, 5xx)
    config_applied: int = 0  # changed slices taken into use without a restart


@dataclass
class Follower:
    """Follows one site's slice at ``url``. ``check`` is called with a slice that passed
    ``check_slice`` before it is accepted (the agent builds its tasks there: a slice whose
    tasks do not build is refused like an invalid one)."""

    url: str
    site: str
    key: bytes
    cache: LastGood
    check: Callable[[Inventory], object] = lambda inv: None
    ca_file: str | None = None
    current: Copy | None = None
    inventory: Inventory | None = None
    counters: Counters = field(default_factory=Counters)
    fetched_at: float | None = None  # wall clock of the last successful fetch (200 or 304)

    @property
    def interval_s(self) -> float:
        return self.inventory.agent.config_poll_s if self.inventory is not None else 300.0

    def accept(self, c: Copy, where: str) -> Inventory:
        inv = check_slice(c.data, c.signature, self.key, self.site, where)
        try:
            self.check(inv)
        except NetreadyError as e:
            raise SliceError(f"its tasks do not build: {e}") from None
        return inv

    def refuse(self, where: str, why: str) -> None:
        self.counters.config_errors += 1
        kept = "keeping the last good copy" if self.current else "no good copy yet"
        log.error(
            "configuration from %s refused: %s; %s",
            where,
            why,
            kept,
            extra={"site": self.site, "reason": why, "config_errors": self.counters.config_errors},
        )

    async def fetch(self) -> Copy | None:
        """One conditional GET. The slice as served, or None when it has not changed (304).
        ``SliceError`` for an answer that is not a slice, ``OSError``-like httpx errors and
        ``FleetError`` for a server that cannot be reached or answers 5xx."""
        import httpx

        headers = {"Accept": "application/yaml"}
        if self.current is not None:
            headers["If-None-Match"] = self.current.etag
        verify: str | bool = self.ca_file or True
        try:
            async with (
                httpx.AsyncClient(
                    timeout=FETCH_TIMEOUT_S, verify=verify, follow_redirects=False, trust_env=False
                ) as client,
                client.stream("GET", self.url, headers=headers) as r,
            ):
                if r.status_code == 304:
                    return None
                if r.status_code >= 500:
                    raise FleetError(f"server answered {r.status_code}")
                if r.status_code != 200:
                    raise SliceError(f"server answered {r.status_code}, not a slice")
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > SLICE_MAX_BYTES:
                        raise SliceError(f"answer larger than {SLICE_MAX_BYTES:,} bytes")
                sig = r.headers.get(SIG_HEADER)
                tag = r.headers.get("ETag") or etag(bytes(body))
        except httpx.HTTPError as e:
            raise FleetError(f"{type(e).__name__}: {e}".rstrip(": ")) from None
        return Copy(bytes(body), sig or "", tag)

    async def poll(self) -> Inventory | None:
        """Fetch; a changed, good slice is saved as the last good copy and returned (the
        caller applies it). None when nothing changed or the server could not be used (the
        last good copy stays in force). Never raises for what the server does."""
        try:
            got = await self.fetch()
        except FleetError as e:
            self.counters.config_unreachable += 1
            log.warning(
                "config server %s unreachable: %s; running from the last good copy",
                self.url,
                e,
                extra={"site": self.site, "reason": str(e)},
            )
            return None
        except SliceError as e:
            self.refuse(self.url, str(e))
            return None
        self.fetched_at = time.time()
        if got is None or (self.current is not None and got.data == self.current.data):
            return None
        try:
            inv = self.accept(got, self.url)
        except SliceError as e:
            self.refuse(self.url, str(e))
            return None
        self.current, self.inventory = got, inv
        try:
            self.cache.save(got)
        except OSError as e:
            log.warning(
                "cannot keep the new configuration on disk (%s): %s; running it anyway",
                self.cache.dir,
                e.strerror or e,
                extra={"site": self.site, "reason": str(e)},
            )
        return inv

    async def start(self) -> Inventory:
        """The configuration to start from: the server's slice, else the last good copy
        on disk (checked again), else ``FleetError``."""
        inv = await self.poll()
        if inv is not None:
            return inv
        c = self.cache.load()
        if c is None:
            raise FleetError(
                f"no configuration: nothing usable from {self.url} and no last good copy "
                f"in {self.cache.dir}"
            )
        try:
            inv = self.accept(c, str(self.cache.data_path))
        except SliceError as e:
            self.refuse(str(self.cache.data_path), str(e))
            raise FleetError(
                f"no configuration: nothing usable from {self.url} and the copy in "
                f"{self.cache.dir} is refused ({e})"
            ) from None
        self.current, self.inventory = c, inv
        log.warning(
            "starting from the last good copy %s (the config server gave nothing usable)",
            self.cache.data_path,
            extra={"site": self.site},
        )
        return inv


def follower(
    url: str,
    site: str,
    key_path: str | Path,
    state_dir: str | Path,
    *,
    ca_file: str | None = None,
    check: Callable[[Inventory], object] | None = None,
) -> Follower:
    """The agent's follower for ``--config-url``: the site's slice URL, the public key, the
    last good copy under ``STATE_DIR/config``."""
    return Follower(
        slice_url(url, site),
        site,
        public_key(key_path),
        LastGood(Path(state_dir) / "config"),
        check=check or (lambda inv: None),
        ca_file=ca_file,
    )


__all__ = [
    "SIG_HEADER",
    "Copy",
    "Counters",
    "FleetError",
    "Follower",
    "LastGood",
    "SliceError",
    "check_slice",
    "etag",
    "follower",
    "generate_keypair",
    "public_key",
    "sign",
    "signing_key",
    "slice_url",
    "verify",
    "write_keypair",
]
