"""Router collector over SSH: DSL line status from the router CLI, parsed with TextFSM.

Registered as collector ``ssh``. It logs in with a key (paramiko, in a worker thread so the
event loop never blocks), runs the vendor's command set, parses each output with a TextFSM
template from ``collectors/templates/`` and writes the same ``dsl_line`` records as the SNMP
collector (``method=ssh``), so a report does not care where a figure came from.

Host keys are checked against known_hosts (the inventory's ``router.ssh.known_hosts``, else
``~/.ssh/known_hosts``; ``[host]:port`` entries for ports other than 22) with paramiko's
``RejectPolicy``: an unknown or changed key is a failed record, not a prompt.
``trust_on_first_use`` (CLI ``--trust-on-first-use``) accepts an *unknown* key once and
appends it to that known_hosts file; a *changed* key is always refused.

Limits: connect/banner/auth timeouts from the inventory (``ssh.timeout_s``), a per-command
deadline and a read timeout (no output for that long), an output size cap. Output is drained
before the exit status is read.

Parsers are pure: ``parse_output(vendor, command, text) -> list[DslLine]``.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import textfsm
from netready.collectors.dsl import DSL_FIELDS, DslLine, dsl_record, tech_from_mode
from pydantic import BaseModel, ConfigDict, Field

from netready.errors import ConfigError, ParseError
from netready.optional import require
from netready.plugin import Context, Plugin
from netready.records import Record, failure, now_ms

TEMPLATES = Path(__file__).with_name("templates")

# ------------------------------------------------------------------------------ parsers


def textfsm_rows(template: str, text: str) -> list[dict[str, str]]:
    """Run ``collectors/templates/<template>.textfsm`` over ``text`` (CRLF tolerated)."""
    with open(TEMPLATES / f"{template}.textfsm", encoding="utf-8") as f:
        fsm = textfsm.TextFSM(f)
    clean = text.replace("\r\n", "\n").replace("\r", "\n")
    return fsm.ParseTextToDicts(clean)  # type: ignore[no-any-return]


def _num(s: str | None) -> float | None:
    if s is None:
        return None
    s = s.strip()
    if not s or s.upper() in ("NA", "N/A", "-"):
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _sum(*vals: str | None) -> float | None:
    nums = [n for n in (_num(v) for v in vals) if n is not None]
    return sum(nums) if nums else None


def _max(*vals: str | None) -> float | None:
    nums = [n for n in (_num(v) for v in vals) if n is not None]
    return max(nums) if nums else None


def parse_cisco_controller_vdsl(text: str) -> list[DslLine]:
    """``show controller vdsl N/N/N`` (IOS-XE) -> one ``DslLine`` per controller.

    XTU-R column = downstream, XTU-C column = upstream. Sync rate = the sum of the
    channels that are not "NA" (Channel0 normally; Channel1 too on a dual-latency line).
    Interleave delay = the larger of the two channels. An attainable rate of 0 is "not
    reported"; others are kept as the modem said (the C1112 says 57590 attainable upstream
    while synced at 57746).
    The line is up when the modem status says Showtime.
    """
    out: list[DslLine] = []
    for r in textfsm_rows("cisco_iosxe_show_controller_vdsl", text):
        showtime = "showtime" in r["MODEM_STATUS"].lower()
        mode = r["TRAINED_MODE"] or None
        line = DslLine(ifname=f"VDSL {r['CONTROLLER']}", mode=mode, line_up=showtime)
        tech = tech_from_mode(mode)
        line.detected_tech, line.detected_by = (tech, "cli") if tech else ("unknown", "")
        line.sync_down_kbps = _sum(r["SPEED_DS1"], r["SPEED_DS0"])
        line.sync_up_kbps = _sum(r["SPEED_US1"], r["SPEED_US0"])
        # 0 means "not reported" (the ADSL2+ output reads 0 while synced at 23.8 Mbit/s).
        line.attainable_down_kbps = _num(r["ATTAINABLE_DS"]) or None
        line.attainable_up_kbps = _num(r["ATTAINABLE_US"]) or None
        line.snr_margin_down_db = _num(r["SNR_DS"])
        line.snr_margin_up_db = _num(r["SNR_US"])
        line.atten_down_db = _num(r["LINE_ATTEN_DS"])
        line.atten_up_db = _num(r["LINE_ATTEN_US"])
        line.interleave_delay_ms = _max(r["INTERLEAVE_DS1"], r["INTERLEAVE_DS0"])
        line.interleave_delay_up_ms = _max(r["INTERLEAVE_US1"], r["INTERLEAVE_US0"])
        crc_dn, crc_up = _sum(r["CRC_DS1"], r["CRC_DS0"]), _sum(r["CRC_US1"], r["CRC_US0"])
        line.crc_errors_down = None if crc_dn is None else int(crc_dn)
        line.crc_errors_up = None if crc_up is None else int(crc_up)
        if not showtime:
            line.sync_down_kbps = line.sync_down_kbps or 0.0
            line.sync_up_kbps = line.sync_up_kbps or 0.0
            line.attainable_down_kbps = line.attainable_up_kbps = None
            line.snr_margin_down_db = line.snr_margin_up_db = None
            line.atten_down_db = line.atten_up_db = None
        out.append(line)
    return out


def parse_cisco_rawcli_summary(text: str) -> list[DslLine]:
    """``test vdsl rawcli "basic show summary 0"`` -> rates, mode, state (no SNR)."""
    out = []
    for r in textfsm_rows("cisco_iosxe_test_vdsl_rawcli_summary", text):
        up = r["STATUS"].lower() == "showtime"
        mode = f"{r['MODE']} {r['ANNEX']} {r['PROFILE']}"
        tech = tech_from_mode(r["MODE"])
        out.append(
            DslLine(
                ifname="VDSL 0",
                detected_tech=tech or "unknown",
                detected_by="cli" if tech else "",
                line_up=up,
                mode=mode,
                sync_down_kbps=_num(r["RATE_DS"]),
                sync_up_kbps=_num(r["RATE_US"]),
            )
        )
    return out


def parse_huawei_display_interface(text: str) -> list[DslLine]:
    """``display interface`` (VRP) -> one ``DslLine`` per port whose PHY type is a DSL.

    VRP's generic interface output says only that the port is a DSL port and whether it is
    up: no rates or margins (those need ``display dsl interface``, for which we have no
    recording to write a template against).
    """
    out = []
    for r in textfsm_rows("huawei_vrp_display_interface", text):
        tech = tech_from_mode(r["PHY_TYPE"]) if r["PHY_TYPE"] else None
        if not tech:
            continue
        up = r["STATE"].upper().startswith("UP") and r["PROTOCOL"].upper().startswith("UP")
        out.append(
            DslLine(
                ifname=r["INTERFACE"],
                detected_tech=tech,
                detected_by="cli",
                line_up=up,
                mode=r["PHY_TYPE"],
            )
        )
    return out


@dataclass(frozen=True)
class Command:
    template: str  # command text; {controller} is filled from the spec
    parse: Callable[[str], list[DslLine]]


#: vendor (inventory ``router.vendor``) -> the commands that give DSL line status.
COMMANDS: dict[str, tuple[Command, ...]] = {
    "cisco_iosxe": (Command("show controller vdsl {controller}", parse_cisco_controller_vdsl),),
    "huawei_vrp": (Command("display interface", parse_huawei_display_interface),),
}

_ERROR_MARKERS = (
    "% invalid input",
    "% incomplete command",
    "% ambiguous command",
    "error: unrecognized command",
    "error: wrong parameter",
)


def parse_output(vendor: str, command: str, text: str) -> list[DslLine]:
    """Parse one command's output; ``ParseError`` if the router refused it or nothing parsed."""
    low = text.lower()
    for marker in _ERROR_MARKERS:
        if marker in low:
            first = next((ln.strip() for ln in text.splitlines() if marker in ln.lower()), marker)
            raise ParseError(f"{vendor}: {command!r} was refused by the router: {first}")
    cmds = {c.template.split(" {")[0]: c for c in COMMANDS.get(vendor, ())}
    cmd = next((c for k, c in cmds.items() if command.startswith(k)), None)
    if cmd is None:
        raise ParseError(f"{vendor}: no parser for {command!r}")
    lines = cmd.parse(text)
    if not lines and vendor != "huawei_vrp":
        head = next((ln.strip() for ln in text.splitlines() if ln.strip()), "(empty output)")
        raise ParseError(f"{vendor}: {command!r} output not recognised: {head[:80]}")
    return lines


# ------------------------------------------------------------------------------- SSH I/O


class SshFailure(Exception):
    def __init__(self, result: str, reason: str):
        super().__init__(reason)
        self.result = result
        self.reason = reason


def host_key_name(host: str, port: int) -> str:
    """known_hosts name: ``host`` on port 22, ``[host]:port`` otherwise (OpenSSH's form)."""
    return host if port == 22 else f"[{host}]:{port}"


def _load_pkey(text: str) -> Any:
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
    username: str,
    key_text: str,
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
    paramiko = require("paramiko", "the ssh collector")

    where = f"{username}@{host_key_name(host, port)}"
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
    pkey = _load_pkey(key_text)
    try:
        try:
            client.connect(
                host,
                port,
                username=username,
                pkey=pkey,
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
            raise SshFailure("auth_failed", f"{where}: key authentication failed ({e})") from None
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


# ---------------------------------------------------------------------------- collector


class Spec(BaseModel):
    """Where and what. Credentials, vendor and known_hosts come from the inventory's
    ``router.ssh``; ``host``/``port`` override the address (tests use a loopback sshd)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, description="router address (overrides the inventory)")
    port: int | None = Field(None, ge=1, le=65535, description="router SSH port (overrides)")
    device: str | None = Field(None, description="device tag (default: the router host)")
    controller: str = Field(
        "0/2/0",
        pattern=r"^\d+(/\d+){1,3}$",
        description="Cisco VDSL controller (show controller vdsl N/N/N)",
    )
    known_hosts: str | None = Field(
        None,
        description="known_hosts file (default: router.ssh.known_hosts, else ~/.ssh/known_hosts)",
    )
    trust_on_first_use: bool = Field(
        False,
        description="accept an unknown host key once and record it in known_hosts "
        "(a changed key is still refused)",
    )
    command_timeout_s: float = Field(
        30.0, gt=0, le=600, description="seconds one command may take"
    )
    read_timeout_s: float = Field(
        15.0, gt=0, le=600, description="seconds without output before a command is given up"
    )
    max_output_bytes: int = Field(
        1_000_000, ge=1024, le=100_000_000, description="most bytes of output read per command"
    )


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Read DSL line status from the router CLI over SSH (Cisco IOS-XE, Huawei VRP)."""
    site = ctx.site
    if site is None or site.router is None or site.router.ssh is None:
        who = site.ods if site else "(no site)"
        raise ConfigError(f"site {who}: router.ssh is not configured in the inventory")
    router, cfg = site.router, site.router.ssh
    cmds = COMMANDS.get(router.vendor)
    if not cmds:
        raise ConfigError(
            f"site {site.ods}: router vendor {router.vendor} has no SSH command set "
            f"(supported: {', '.join(sorted(COMMANDS))}); use the snmp collector"
        )
    host = spec.host or router.host
    port = spec.port or cfg.port
    device = spec.device or router.host
    kh = Path(os.path.expanduser(spec.known_hosts or cfg.known_hosts or "~/.ssh/known_hosts"))
    texts = [c.template.format(controller=spec.controller) for c in cmds]
    tags = {**ctx.tags, "method": "ssh", "device": device}
    t0 = now_ms()
    key_text = cfg.key_file.resolve()
    budget = cfg.timeout_s * 3 + (spec.command_timeout_s + spec.read_timeout_s) * len(texts) + 5
    try:
        outputs = await asyncio.wait_for(
            asyncio.to_thread(
                run_commands,
                host,
                port,
                cfg.username,
                key_text,
                kh,
                texts,
                trust_on_first_use=spec.trust_on_first_use,
                connect_timeout_s=cfg.timeout_s,
                command_timeout_s=spec.command_timeout_s,
                read_timeout_s=spec.read_timeout_s,
                max_output_bytes=spec.max_output_bytes,
                log=_stderr,
            ),
            budget,
        )
    except SshFailure as e:
        return [failure("dsl_line", tags, e.result, e.reason, t0)]
    except TimeoutError:
        return [
            failure(
                "dsl_line",
                tags,
                "timeout",
                f"{host}:{port}: SSH session did not finish within {budget:g} s",
                t0,
            )
        ]
    records: list[Record] = []
    t1 = now_ms()
    for cmd, text in outputs:
        try:
            lines = parse_output(router.vendor, cmd, text)
        except ParseError as e:
            records.append(failure("dsl_line", tags, "error", str(e), t1))
            continue
        for ln in lines:
            records.append(
                dsl_record(
                    ln,
                    ctx.tags,
                    method="ssh",
                    device=device,
                    time_ms=t1,
                    contract_down_mbps=site.link.down_mbps,
                    contract_up_mbps=site.link.up_mbps,
                )
            )
    if not records:
        records.append(
            failure("dsl_line", tags, "skipped", f"{device}: the router reports no DSL port", t1)
        )
    return records


PLUGIN = Plugin(
    kind="collector",
    name="ssh",
    spec=Spec,
    run=run,
    measurement="dsl_line",
    method="ssh",
    summary="Read DSL line status from the router CLI over SSH (key authentication; Cisco "
    "IOS-XE `show controller vdsl`, Huawei VRP `display interface`) into dsl_line records.",
    needs="router.ssh",
    interval_s=3600.0,
    fields=DSL_FIELDS,
)
