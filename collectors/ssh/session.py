"""The SSH edge: log in with paramiko (key or password), run commands, return their output.

Blocking (the collector runs it in a worker thread). Host keys are checked against
known_hosts with a reject policy (or recorded once with trust on first use); every failure is
an ``SshFailure`` with a result code and a one-line reason. A password is handed to paramiko
and nowhere else: no message carries it (reasons go through ``inventory.redact`` as well).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netready.inventory import redact
from netready.optional import require


class SshFailure(Exception):
    def __init__(self, result: str, reason: str):
        reason = redact(reason)
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass(frozen=True, repr=False)
class Credentials:
    """What to log in with: a private key (PEM text), a password, or both (key first).
    ``repr`` names which, never the values."""

    username: str
    key_text: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        how = [k for k, v in (("key", self.key_text), ("password", self.password)) if v]
        return f"Credentials({self.username!r}, {'+'.join(how) or 'none'})"

    @property
    def how(self) -> str:
        return " or ".join(k for k, v in (("key", self.key_text), ("password", self.password)) if v)


def host_key_name(host: str, port: int) -> str:
    """known_hosts name: ``host`` on port 22, ``[host]:port`` otherwise (OpenSSH's form)."""
    return host if port == 22 else f"[{host}]:{port}"


def load_pkey(text: str) -> Any:
    paramiko = require("paramiko", "the ssh collector")

    data = text.strip() + "\n"
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(data))
        except paramiko.PasswordRequiredException:
            raise SshFailure(
                "error",
                "the SSH private key is encrypted; netready needs an "
                "unencrypted key (keep it in a file readable only by the agent)",
            ) from None
        except (paramiko.SSHException, ValueError):
            continue
    raise SshFailure("error", "the SSH private key is not an Ed25519, ECDSA or RSA key")


def run_commands(
    host: str,
    port: int,
    creds: Credentials,
    known_hosts: Path,
    commands: list[str],
    *,
    trust_on_first_use: bool = False,
    connect_timeout_s: float = 10.0,
    command_timeout_s: float = 30.0,
    read_timeout_s: float = 15.0,
    max_output_bytes: int = 1_000_000,
    log: Callable[[str], None] | None = None,
) -> list[tuple[str, str]]:
    """Blocking: connect, run each command, return ``[(command, output)]``; ``SshFailure``."""
    paramiko: Any = require("paramiko", "the ssh collector")

    where = f"{creds.username}@{host_key_name(host, port)}"
    client = paramiko.SSHClient()
    if known_hosts.exists():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as e:
            raise SshFailure("error", f"cannot read known_hosts {known_hosts}: {e}") from None

    class _Reject(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise SshFailure(
                "auth_failed",
                f"{where}: host key ({key.get_name()}) is not in "
                f"{known_hosts}; check it and add it, or run once with "
                "--trust-on-first-use to record it",
            )

    class _Tofu(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(known_hosts, "a", encoding="ascii") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            client.get_host_keys().add(hostname, key.get_name(), key)
            if log:
                log(
                    f"trust on first use: recorded {key.get_name()} key of {hostname} "
                    f"(SHA256 fingerprint {key.fingerprint}) in {known_hosts}"
                )

    client.set_missing_host_key_policy(_Tofu() if trust_on_first_use else _Reject())
    pkey = load_pkey(creds.key_text) if creds.key_text else None
    try:
        try:
            client.connect(
                host,
                port,
                username=creds.username,
                pkey=pkey,
                # paramiko tries the key, then the password (falling back to
                # keyboard-interactive with it, as many CPE ask for)
                password=creds.password,
                timeout=connect_timeout_s,
                banner_timeout=connect_timeout_s,
                auth_timeout=connect_timeout_s,
                channel_timeout=connect_timeout_s,
                allow_agent=False,
                look_for_keys=False,
            )
        except SshFailure:
            raise
        except paramiko.BadHostKeyException as e:
            raise SshFailure(
                "auth_failed",
                f"{where}: host key CHANGED (got {e.key.get_name()}, "
                f"known_hosts {known_hosts} has another); refusing to connect",
            ) from None
        except paramiko.AuthenticationException as e:
            raise SshFailure(
                "auth_failed", f"{where}: {creds.how} authentication failed ({e})"
            ) from None
        except TimeoutError:
            raise SshFailure(
                "timeout", f"{where}: no SSH answer in {connect_timeout_s:g} s"
            ) from None
        except ConnectionRefusedError:
            raise SshFailure("refused", f"{where}: connection refused") from None
        except paramiko.ssh_exception.NoValidConnectionsError as e:
            errs = list(e.errors.values())
            if errs and all(isinstance(x, ConnectionRefusedError) for x in errs):
                raise SshFailure("refused", f"{where}: connection refused") from None
            raise SshFailure("unreachable", f"{where}: {e}") from None
        except paramiko.SSHException as e:
            raise SshFailure("error", f"{where}: SSH failed: {e}") from None
        except OSError as e:
            raise SshFailure("unreachable", f"{where}: {e.strerror or e}") from None
        return [
            (cmd, _exec(client, cmd, where, command_timeout_s, read_timeout_s, max_output_bytes))
            for cmd in commands
        ]
    finally:
        client.close()


def _exec(
    client: Any,
    cmd: str,
    where: str,
    command_timeout_s: float,
    read_timeout_s: float,
    max_bytes: int,
) -> str:
    paramiko = require("paramiko", "the ssh collector")

    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise SshFailure("error", f"{where}: connection closed before {cmd!r}")
    try:
        chan = transport.open_session(timeout=read_timeout_s)
    except paramiko.SSHException as e:
        raise SshFailure("error", f"{where}: cannot open a session for {cmd!r}: {e}") from None
    try:
        chan.set_combine_stderr(True)
        chan.settimeout(read_timeout_s)
        chan.exec_command(cmd)
        buf = bytearray()
        deadline = time.monotonic() + command_timeout_s
        while True:
            if time.monotonic() > deadline:
                raise SshFailure(
                    "timeout", f"{where}: {cmd!r} did not finish in {command_timeout_s:g} s"
                )
            try:
                data = chan.recv(65536)
            except TimeoutError:
                raise SshFailure(
                    "timeout", f"{where}: {cmd!r} sent nothing for {read_timeout_s:g} s"
                ) from None
            if not data:
                break  # EOF: output drained
            buf += data
            if len(buf) > max_bytes:
                raise SshFailure(
                    "error", f"{where}: {cmd!r} output exceeds the {max_bytes} byte cap; not parsed"
                )
        # Output is drained, so the exit status cannot deadlock; still bounded.
        if chan.status_event.wait(max(0.1, deadline - time.monotonic())):
            status = chan.exit_status
            if status not in (0, -1) and not buf:
                raise SshFailure("error", f"{where}: {cmd!r} exited {status} with no output")
        return buf.decode("utf-8", "replace")
    finally:
        chan.close()
