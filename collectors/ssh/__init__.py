"""Router collector over SSH: DSL line status from the router CLI, parsed with TextFSM.

Registered as collector ``ssh``. It logs in with a key or a password (paramiko, in a worker
thread so the event loop never blocks; ``session.py``), runs the vendor's command set, parses
each output with TextFSM (``parse.py``: ntc-templates where it has the command, our templates
in ``collectors/ssh/templates/`` where it has none) and writes the same ``dsl_line`` records
as the SNMP collector (``method=ssh``), so a report does not care where a figure came from.

Host keys are checked against known_hosts (the inventory's ``router.ssh.known_hosts``, else
``~/.ssh/known_hosts``; ``[host]:port`` entries for ports other than 22) with paramiko's
``RejectPolicy``: an unknown or changed key is a failed record, not a prompt.
``trust_on_first_use`` (CLI ``--trust-on-first-use``) accepts an *unknown* key once and
appends it to that known_hosts file; a *changed* key is always refused.

Credentials come from the inventory as secret references (``key_file``, ``password``:
``env:NAME`` or ``file:PATH``, never inline), are resolved at use and never logged.

Limits: connect/banner/auth timeouts from the inventory (``ssh.timeout_s``), a per-command
deadline and a read timeout (no output for that long), an output size cap. Output is drained
before the exit status is read.

Parsers are pure: ``parse_output(vendor, command, text) -> list[DslLine]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from netready.collectors.dsl import DSL_FIELDS, dsl_record
from netready.collectors.ssh.parse import (
    COMMANDS,
    Command,
    parse_cisco_controller_vdsl,
    parse_cisco_rawcli_summary,
    parse_huawei_display_interface,
    parse_output,
    textfsm_rows,
)
from netready.collectors.ssh.session import Credentials, SshFailure, host_key_name, run_commands
from pydantic import BaseModel, ConfigDict, Field

from netready.errors import ConfigError, ParseError
from netready.plugin import Context, Plugin
from netready.records import Record, failure, now_ms

__all__ = [
    "COMMANDS",
    "PLUGIN",
    "Command",
    "Credentials",
    "Spec",
    "SshFailure",
    "host_key_name",
    "parse_cisco_controller_vdsl",
    "parse_cisco_rawcli_summary",
    "parse_huawei_display_interface",
    "parse_output",
    "run",
    "run_commands",
    "textfsm_rows",
]

# ---------------------------------------------------------------------------- collector


class Spec(BaseModel):
    """Where and what. Credentials, vendor and known_hosts come from the inventory's
    ``router.ssh``; ``host``/``port`` override the address (tests use a loopback sshd)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, description="router address (overrides the inventory)")
    port: int | None = Field(None, ge=1, le=65535, description="router SSH port (overrides)")
    device: str | None = Field(None, description="device tag (default: the router host)")
    controller: str | None = Field(
        None,
        pattern=r"^\d+(/\d+){0,3}$",
        description="Cisco VDSL controller (default 0/2/0 on cisco_iosxe, 0 on cisco_ios)",
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
    command_timeout_s: float = Field(30.0, gt=0, le=600, description="seconds one command may take")
    read_timeout_s: float = Field(
        15.0, gt=0, le=600, description="seconds without output before a command is given up"
    )
    max_output_bytes: int = Field(
        1_000_000, ge=1024, le=100_000_000, description="most bytes of output read per command"
    )


#: the VDSL controller a vendor's command names when the spec does not say
DEFAULT_CONTROLLER = {"cisco_iosxe": "0/2/0", "cisco_ios": "0"}


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Read DSL line status from the router CLI over SSH (Cisco IOS/IOS-XE, Huawei VRP)."""
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
    controller = spec.controller or DEFAULT_CONTROLLER.get(router.vendor, "0")
    texts = [c.template.format(controller=controller) for c in cmds]
    tags = {**ctx.tags, "method": "ssh", "device": device}
    t0 = now_ms()
    creds = Credentials(
        cfg.username,
        key_text=cfg.key_file.resolve() if cfg.key_file else None,
        password=cfg.password.resolve() if cfg.password else None,
    )
    budget = cfg.timeout_s * 3 + (spec.command_timeout_s + spec.read_timeout_s) * len(texts) + 5
    try:
        outputs = await asyncio.wait_for(
            asyncio.to_thread(
                run_commands,
                host,
                port,
                creds,
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
    summary="Read DSL line status from the router CLI over SSH (key or password "
    "authentication; Cisco IOS-XE `show controller vdsl`, classic IOS `show controllers vdsl`, "
    "Huawei VRP `display interface`) into dsl_line records.",
    needs="router.ssh",
    interval_s=3600.0,
    fields=DSL_FIELDS,
)
