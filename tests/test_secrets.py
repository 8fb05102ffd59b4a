"""Secrets stay secret: references only, checked values, clean one-line errors.

Real parts: the agent, ``netready ship`` and ``netready spool stats`` as subprocesses
against the session's real influxd; real files, a real FIFO, a real directory and
``/dev/zero`` behind ``file:`` references. One fake: a recording HTTP server (stdlib
``http.server`` on loopback) stands in for a misbehaving proxy in front of InfluxDB, which
no real InfluxDB does. Its wire contract: it answers every request with HTTP 502 and a
``text/plain`` body that echoes the request line and every request header back (as some
proxies' and WAFs' error pages do). The test checks that nothing of the token or the
Authorization header value reaches an exception message, a log line, ``last_error`` or
``spool stats``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from netready import registry
from netready.cli import cli
from netready.errors import SecretError, StoreError
from netready.inventory import (
    SECRET_FILE_MAX_BYTES,
    HeaderSecretRef,
    SecretRef,
    StoreConfig,
    TextSecretRef,
    loads,
)

SITE = {
    "ods": "Y81001",
    "name": "Riverside Surgery",
    "type": "gp_practice",
    "icb": "QHM",
    "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
    "clinic_hours": {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": "00:00",
        "end": "23:59:59",
    },
}


def write_inventory(tmp_path: Path, store: dict[str, object], targets: list[dict]) -> Path:
    inv = {
        "version": 1,
        "store": store,
        "agent": {"spool_path": str(tmp_path / "spool.db"), "ship_interval_s": 1, "splay_s": 0},
        "sites": [{**SITE, "targets": targets}],
    }
    p = tmp_path / "inv.yaml"
    p.write_text(yaml.safe_dump(inv, sort_keys=False))
    return p


def rtt_target(duration: float = 0.3) -> dict[str, object]:
    return {"name": "core", "probe": "rtt", "address": "127.0.0.1:9",
            "params": {"duration_s": duration, "rate_pps": 20, "window_s": 0.3}}  # fmt: skip


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def spool_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("spool.db*"))


# --------------------------------------------------------------------------- the value


def test_token_file_with_embedded_newline_never_reaches_log_spool_or_stats(
    tmp_path: Path, influxdb: tuple[str, str]
) -> None:
    """The reported case: a token file with a newline inside. Today the whole token went
    into the log, the spool's last_error and ``spool stats`` (httpx: "Illegal header
    value b'Token ...'"). Now the agent and ``ship`` refuse it at start with one line that
    names the reference; the value is nowhere."""
    url, db = influxdb
    first, second = "first-" + os.urandom(6).hex(), "second-" + os.urandom(6).hex()
    tok = tmp_path / "influx.token"
    tok.write_text(f"{first}\n{second}\n")
    store = {"kind": "influxdb_v1", "url": url, "database": db, "token": f"file:{tok}"}
    inv = write_inventory(tmp_path, store, [rtt_target()])
    outputs = []
    r = run("netready-agent", "--inventory", str(inv), "--once", "--log-level", "debug",
            "--state-dir", str(tmp_path / "state"))  # fmt: skip
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and f"secret file:{tok}" in lines[0], r.stderr
    assert "line break" in lines[0] and "Traceback" not in r.stderr
    # a spool that already holds records (written by an embedded-store run), then ship
    emb = write_inventory(tmp_path, {"kind": "embedded"}, [rtt_target()])
    run("netready-agent", "--inventory", str(emb), "--once", "--state-dir", str(tmp_path / "s"))
    inv = write_inventory(tmp_path, store, [rtt_target()])
    for cmd in (("ship",), ("spool", "stats"), ("spool", "stats", "--format", "json")):
        r = run("netready", *cmd, "--inventory", str(inv))
        outputs.append(r.stdout + r.stderr)
        assert "Traceback" not in r.stderr
    assert "secret file:" in outputs[1] and outputs[1].count("\n") == 1, outputs[1]
    everything = "".join(outputs)
    dump = spool_bytes(tmp_path)
    assert b"rtt" in dump  # the spool is there and was read
    for part in (first, second):
        assert part not in everything
        assert part.encode() not in dump


@pytest.mark.parametrize(
    ("cls", "value", "ok", "why"),
    [
        (SecretRef, "s3cr3t-v4lu3\n", "s3cr3t-v4lu3", None),  # a trailing newline is stripped
        (SecretRef, "s3cr3t-v4lu3\r\n", "s3cr3t-v4lu3", None),
        (SecretRef, "s3cr3t\nv4lu3", None, "line break"),
        (SecretRef, "s3cr3t\rv4lu3", None, "line break"),
        (SecretRef, "s3cr3t\u2028v4lu3", None, "line break"),
        (SecretRef, "s3cr3t\x1b[2Jv4lu3", None, "control character (U+001B)"),
        (SecretRef, "s3cr3t\x7fv4lu3", None, "control character (U+007F)"),
        (SecretRef, "s3cr3t\x9bv4lu3", None, "control character (U+009B)"),
        (SecretRef, "s3cr3t\tv4lu3", None, "control character (U+0009)"),
        (SecretRef, "pässwörd-ok", "pässwörd-ok", None),  # an HMAC key or SNMP passphrase
        (HeaderSecretRef, "pässwörd-no", None, "non-ASCII"),  # goes into an HTTP header
        (HeaderSecretRef, "Abc-123._~+/=", "Abc-123._~+/=", None),
        (
            TextSecretRef,
            "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "-----BEGIN KEY-----\nabc\n-----END KEY-----",
            None,
        ),
        (TextSecretRef, "key\x00with-nul", None, "NUL"),
        (SecretRef, "\n", None, "empty"),
    ],
)
def test_resolved_values_are_checked_for_where_they_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: type[SecretRef], value: str,
    ok: str | None, why: str | None,
) -> None:  # fmt: skip
    f = tmp_path / "secret"
    f.write_bytes(value.encode())
    refs = [cls.check(f"file:{f}")]
    if "\x00" not in value and value.strip("\r\n"):  # an environment value is checked too
        monkeypatch.setenv("NR_TEST_SECRET", value.rstrip("\n") if ok is None else ok)
        refs.append(cls.check("env:NR_TEST_SECRET"))
    for ref in refs:
        if ok is not None:
            assert ref.resolve() == ok
            continue
        with pytest.raises(SecretError) as ei:
            ref.resolve()
        msg = str(ei.value)
        assert msg.startswith(f"secret {ref}:") and why in msg and "\n" not in msg, msg
        for piece in ("s3cr3t", "v4lu3", "pässwörd", "with-nul"):
            assert piece not in msg.replace(str(ref), "")


def test_env_reference_with_a_bad_name_does_not_echo_it() -> None:
    """``env:`` followed by the secret itself (a common slip) must not print the secret."""
    with pytest.raises(ValueError) as ei:
        SecretRef.check("env:sk-live-9f8e7d6c5b4a")
    assert "sk-live" not in str(ei.value)


# --------------------------------------------------------------------------- file: references


def resolve_in_thread(ref: SecretRef) -> BaseException | str:
    """Resolve off the main thread: a FIFO that blocked would hang this test, not pass it."""
    out: list[BaseException | str] = []

    def go() -> None:
        try:
            out.append(ref.resolve())
        except BaseException as e:  # the test inspects it
            out.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), f"resolving {ref} blocked"
    return out[0]


def test_file_references_must_be_small_regular_text_files(tmp_path: Path) -> None:
    """``file:/dev/zero`` was a MemoryError traceback; a FIFO blocked for ever; a directory
    and binary files gave raw errors. Each is now a one-line SecretError, no bytes echoed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"k" * (SECRET_FILE_MAX_BYTES + 1))
    binary = tmp_path / "binary"
    binary.write_bytes(b"SECRETPART\x00\x01\x02")
    latin1 = tmp_path / "latin1"
    latin1.write_bytes(b"SECRETPART\xe9\xff")
    (tmp_path / "dir").mkdir()
    cases = [
        ("/dev/zero", "is not a regular file (a character device)"),
        (str(fifo), "is not a regular file (a FIFO)"),
        (str(tmp_path / "dir"), "is a directory"),
        (str(big), "is larger than 64 KiB (65,537 bytes)"),
        (str(binary), "holds binary data (a NUL byte)"),
        (str(latin1), "is not UTF-8 text (bad byte at offset 10)"),
        (str(tmp_path / "missing"), "cannot read"),
    ]
    for path, why in cases:
        for cls in (SecretRef, TextSecretRef):
            got = resolve_in_thread(cls.check(f"file:{path}"))
            assert isinstance(got, SecretError), (path, got)
            msg = str(got)
            assert msg.startswith(f"secret file:{path}: ") and why in msg, msg
            assert "\n" not in msg and "SECRETPART" not in msg and "\\x" not in msg
    # the largest allowed file is fine, and a symlink to a regular file is followed
    key = tmp_path / "key.pem"
    body = "-----BEGIN KEY-----\n" + "A" * (SECRET_FILE_MAX_BYTES - 60) + "\n-----END KEY-----\n"
    key.write_text(body)
    (tmp_path / "link").symlink_to(key)
    assert TextSecretRef.check(f"file:{tmp_path / 'link'}").resolve() == body.strip()


# --------------------------------------------------------------------------- the inventory


def check(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    f = tmp_path / "inv.yaml"
    f.write_text(text)
    r = CliRunner().invoke(cli, ["inventory", "check", str(f)])
    assert "Traceback" not in r.output
    return r.exit_code, [ln for ln in r.stderr.splitlines() if ln.strip()]


def test_store_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    inv = {"version": 1, "sites": [SITE]}
    for url in ("http://admin:pa55-SECRETPART@influx.example:8086",
                "https://admin@influx.example",
                "http://influx.example:8086/?u=admin&p=pa55-SECRETPART"):  # fmt: skip
        inv["store"] = {"kind": "influxdb_v1", "url": url}
        code, lines = check(tmp_path, yaml.safe_dump(inv, sort_keys=False))
        assert code == 2 and len(lines) == 1, lines
        assert "store" in lines[0] and "env:NAME or file:PATH" in lines[0]
        assert "SECRETPART" not in lines[0] and "admin" not in lines[0]
    inv["store"] = {"kind": "influxdb_v1", "url": "http://influx.example:8086"}
    assert check(tmp_path, yaml.safe_dump(inv, sort_keys=False))[0] == 0
    # a probe target URL too
    site = {**SITE, "targets": [{"name": "speed", "probe": "throughput",
                                 "address": "https://admin:pa55-SECRETPART@speed.example",
                                 "params": {"token": "env:SPEED_TOKEN"}}]}  # fmt: skip
    code, lines = check(tmp_path, yaml.safe_dump({"version": 1, "sites": [site]}))
    assert code == 2 and len(lines) == 1 and "sites[0].targets[0].address" in lines[0], lines
    assert "credentials" in lines[0] and "SECRETPART" not in lines[0]


def test_inline_secrets_in_probe_params_are_field_errors_with_positions(tmp_path: Path) -> None:
    """The throughput token and the media secret passed ``inventory check`` and then made
    the agent exit 2 at every start. Now the check validates every target's params with
    its probe's Spec: file:line:col and the field path, like any inline secret."""
    text = """\
version: 1
sites:
  - ods: Y81001
    name: Riverside Surgery
    type: gp_practice
    icb: QHM
    link: {tech: fttc, down_mbps: 40, up_mbps: 10}
    targets:
      - name: speed
        probe: throughput
        address: https://speed.example:8443
        params: {token: tok-SECRETPART, direction: down}
      - name: call
        probe: media
        address: media.example:5004
        params:
          secret: hmac-SECRETPART
          calls: 0
          keyframe: true
defaults:
  targets:
    - {name: core, probe: rtt, address: "reflector.example:862", params: {rate_pps: -5}}
    - {name: x, probe: rtx, address: "h:1"}
"""
    code, lines = check(tmp_path, text)
    assert code == 2
    got = sorted(ln.split("inv.yaml:", 1)[1] for ln in lines)
    assert got == sorted([
        "12:25: sites[0].targets[0].params.token: secret given inline; write env:NAME or "
        "file:PATH so it stays out of the file",
        "17:19: sites[0].targets[1].params.secret: secret given inline; write env:NAME or "
        "file:PATH so it stays out of the file",
        "18:18: sites[0].targets[1].params.calls: Input should be greater than or equal to 1",
        "19:11: sites[0].targets[1].params.keyframe: unknown key (typo?)",
        "22:85: defaults.targets[0].params.rate_pps: Input should be greater than 0",
        "23:24: defaults.targets[1].probe: unknown probe 'rtx' (known: "
        f"{', '.join(registry.names('probe'))})",  # every registered probe
    ]), lines  # fmt: skip
    assert "SECRETPART" not in "".join(lines)
    fixed = (
        text.replace("tok-SECRETPART", "env:SPEED_TOKEN")
        .replace("hmac-SECRETPART", "file:/etc/netready/media.key")
        .replace("calls: 0", "calls: 2")
        .replace("keyframe: true", "keyframes: true")
        .replace("rate_pps: -5", "rate_pps: 50")
        .replace('probe: rtx, address: "h:1"', 'probe: icmp, address: "h"')
    )
    code, lines = check(tmp_path, fixed)
    assert code == 0, lines
    # the same specs load in the agent's way (registry.Plugin.make_spec)
    inv = loads(fixed)
    for t in [*inv.sites[0].targets, *inv.defaults.targets]:
        registry.get("probe", t.probe).make_spec(t.spec_params())


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "media", "--target", "127.0.0.1:9", "--secret", "hmac-SECRETPART"],
        ["probe", "throughput", "--target", "http://127.0.0.1:9", "--token", "tok-SECRETPART"],
        ["serve", "--listen", "127.0.0.1:9", "--token", "tok-SECRETPART"],
        ["responder", "--listen", "127.0.0.1:9", "--secret", "hmac-SECRETPART"],
        [
            "reflector",
            "--listen",
            "127.0.0.1:9",
            "--media",
            "127.0.0.1:10",
            "--secret",
            "hmac-SECRETPART",
        ],
    ],
)
def test_cli_secret_options_take_references_not_secrets(argv: list[str]) -> None:
    """``probe media --secret`` took the secret itself (it then sits in shell history and
    ``ps``); every option that takes a secret takes env:NAME or file:PATH only."""
    p = subprocess.run(
        [sys.executable, "-m", "netready.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2, p.stderr
    assert "secret given inline" in p.stderr and "Traceback" not in p.stderr
    assert "SECRETPART" not in p.stdout + p.stderr


# --------------------------------------------------------------------------- foreign text


class EchoProxy(BaseHTTPRequestHandler):
    """HTTP 502 with the request line and headers echoed in a text/plain body."""

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = (f"Bad gateway for {self.requestline}\n{self.headers}").encode()
        self.send_response(502)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_proxy() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), EchoProxy)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_proxy_echoing_our_headers_does_not_put_the_token_in_messages(
    tmp_path: Path, echo_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netready.influx import InfluxV1, InfluxV2

    token = "tok-" + os.urandom(8).hex()
    monkeypatch.setenv("NR_TEST_TOKEN", token)
    monkeypatch.setenv("NR_TEST_USER", "reporter")
    monkeypatch.setenv("NR_TEST_PASS", "pw-" + os.urandom(8).hex())
    v1 = StoreConfig(kind="influxdb_v1", url=echo_proxy, token="env:NR_TEST_TOKEN")
    basic = StoreConfig(kind="influxdb_v1", url=echo_proxy, username="env:NR_TEST_USER",
                        password="env:NR_TEST_PASS")  # fmt: skip
    v2 = StoreConfig(kind="influxdb_v2", url=echo_proxy, token="env:NR_TEST_TOKEN",
                     org="nhs", bucket="netready")  # fmt: skip
    messages = []
    for cfg, cls in ((v1, InfluxV1), (basic, InfluxV1), (v2, InfluxV2)):
        with cls(cfg) as w:  # type: ignore[operator]
            with pytest.raises(StoreError) as ei:
                w.write_lines(["m v=1 1"])
            messages.append(str(ei.value))
        if cls is InfluxV1:
            with cls(cfg) as w, pytest.raises(StoreError) as ei:  # type: ignore[operator]
                w.query("SHOW DATABASES")
            messages.append(str(ei.value))
    joined = "\n".join(messages)
    assert "502" in joined  # the failure is still reported
    assert "Authorization" in joined or "authorization" in joined  # the body was there
    assert token not in joined and os.environ["NR_TEST_PASS"] not in joined
    assert "cmVwb3J0ZXI6" not in joined  # base64 of "reporter:" (the Basic credential)
    assert "Authorization: Basic <redacted>" in joined
    from netready.inventory import redact

    assert redact("InfluxDB: token expired; basic auth disabled") == (
        "InfluxDB: token expired; basic auth disabled"
    )  # only credentials go, the words stay
    assert redact('{"authorization": "Bearer abc.def"}') == '{"authorization": "Bearer <redacted>"}'
    # end to end: the agent ships through the proxy; last_error and spool stats are clean
    store = {"kind": "influxdb_v1", "url": echo_proxy, "token": "env:NR_TEST_TOKEN"}
    inv = write_inventory(tmp_path, store, [rtt_target()])
    r = run("netready-agent", "--inventory", str(inv), "--once", "--ship-timeout", "3",
            "--log-level", "debug", "--state-dir", str(tmp_path / "state"))  # fmt: skip
    s = run("netready", "spool", "stats", "--inventory", str(inv))
    assert "last error" in s.stdout and "502" in s.stdout, s.stdout
    for out in (r.stdout + r.stderr, s.stdout + s.stderr):
        assert token not in out and "Traceback" not in out
    assert token.encode() not in spool_bytes(tmp_path)
