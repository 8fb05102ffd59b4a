"""The agent with no privilege at all: ``netready-agent --once`` as user ``nobody`` with no
capability, in a lab site namespace whose ``net.ipv4.ping_group_range`` allows every group
(what deploy/99-netready-ping.conf sets; the sysctl is per network namespace, so the host's
stays as it is). Its rtt probe measures against a real reflector across the lab link, its icmp
probe through an unprivileged datagram socket, and its records land in the embedded store.

Also the icmp probe's socket choice: the datagram path on IPv4 and IPv6, scapy missing (the
``raw-icmp`` extra: ``auto`` then takes the datagram socket, ``raw`` says which extra), and
neither socket permitted (one failed record naming both fixes). The wire format of the
datagram path is checked byte for byte against RFC 792/4443 and against the kernel's replies.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from netready.lab.netns import PROFILES, Lab
from netready.probes.icmp import wire

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
AGENT = str(Path(PY).parent / "netready-agent")
NOBODY = 65534
AS_NOBODY = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
]
#: python as the CLI, with scapy unimportable (the base install, without the raw-icmp extra)
NO_SCAPY = [
    PY,
    "-c",
    "import sys; sys.modules['scapy'] = None; from netready.cli import main; "
    "sys.argv[0] = 'netready'; main()",
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(sites={"practice": PROFILES["fttc40"]}) as lb:
        # (the lab turns IPv6 off; the site's loopback gets it back, for ::1)
        for setting in (
            "net.ipv4.ping_group_range=0 2147483647",
            "net.ipv6.conf.lo.disable_ipv6=0",
        ):
            lb.run(lb.site_ns("practice"), ["sysctl", "-qw", setting])
        yield lb


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory user nobody may write (pytest's tmp_path is root's, mode 0700)."""
    d = Path(tempfile.mkdtemp(prefix="netready-unpriv-"))
    os.chown(d, NOBODY, NOBODY)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def in_ns(lb: Lab, ns: str, argv: list[str], timeout: float = 90) -> tuple[int, str, str]:
    p = lb.popen(ns, argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def icmp_cli(*args: str) -> list[str]:
    return [PY, "-m", "netready.cli", "probe", "icmp", "--format", "json", *args]


def test_agent_once_as_nobody(lab: Lab, nobody_dir: Path) -> None:
    refl = lab.popen(
        lab.core_ns,
        [
            PY,
            "-m",
            "netready.cli",
            "reflector",
            "--listen",
            f"{lab.core_ip}:862",
            "--allow",
            "10.77.0.0/16",
            "--log-format",
            "text",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in refl.stderr.readline()  # type: ignore[union-attr]
        inv = nobody_dir / "inventory.yaml"
        inv.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "store": {"kind": "embedded"},
                    "agent": {"spool_path": str(nobody_dir / "spool.db"), "splay_s": 0},
                    "sites": [
                        {
                            "ods": "Y81001",
                            "name": "Riverside Surgery",
                            "type": "gp_practice",
                            "icb": "QHM",
                            "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
                            "targets": [
                                {
                                    "name": "core",
                                    "probe": "rtt",
                                    "address": f"{lab.core_ip}:862",
                                    "params": {"duration_s": 2, "rate_pps": 50, "window_s": 1},
                                },
                                {
                                    "name": "edge",
                                    "probe": "icmp",
                                    "address": lab.core_ip,
                                    "params": {"count": 20, "interval_s": 0.02, "dscp": 46},
                                },
                            ],
                        }
                    ],
                }
            )
        )
        rc, _out, err = in_ns(
            lab,
            lab.site_ns("practice"),
            [
                *AS_NOBODY,
                AGENT,
                "--inventory",
                str(inv),
                "--once",
                "--state-dir",
                str(nobody_dir / "state"),
                "--log-format",
                "text",
            ],
        )
    finally:
        refl.terminate()
        refl.wait(10)
    assert rc == 0, err
    assert (nobody_dir / "spool.db").stat().st_uid == NOBODY  # it really ran as nobody
    con = sqlite3.connect(nobody_dir / "spool.db")
    rows = [
        (m, json.loads(t), json.loads(f))
        for m, t, f in con.execute("SELECT measurement, tags, fields FROM points")
    ]
    con.close()
    rtt = [(t, f) for m, t, f in rows if m == "rtt" and t["method"] == "twamp_light"]
    icmp = [(t, f) for m, t, f in rows if m == "rtt" and t["method"] == "icmp"]
    assert len(rtt) == 2 and all(
        t.get("result", "ok") == "ok" and f["received"] == 50 for t, f in rtt
    )
    ((t, f),) = icmp
    assert t["result"] == "ok" and f["sent"] == 20 and f["received"] == 20, f
    assert 0 < f["rtt_min_ms"] <= f["rtt_p50_ms"] < 100
    assert any(m == "agent" for m, _, _ in rows)


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
def test_datagram_socket_loopback(lab: Lab, target: str) -> None:
    rc, out, err = in_ns(
        lab,
        lab.site_ns("practice"),
        [
            *AS_NOBODY,
            *icmp_cli("--target", target, "--count", "30", "--interval", "0.005"),
            "--socket",
            "datagram",
            "--dscp",
            "46",
        ],
    )
    assert rc == 0, err
    (rec,) = json.loads(out)
    assert rec["tags"]["result"] == "ok" and rec["fields"]["received"] == 30


def test_without_scapy(lab: Lab) -> None:
    """The base install (no scapy): ``auto`` uses the datagram socket even as root; ``raw``
    names the extra in a failed record."""
    ns = lab.site_ns("practice")
    rc, out, err = in_ns(
        lab, ns, [*NO_SCAPY, "probe", "icmp", "--format", "json", "--target", lab.core_ip]
    )
    assert rc == 0, err
    (rec,) = json.loads(out)
    assert rec["tags"]["result"] == "ok" and rec["fields"]["received"] == 20
    rc, out, err = in_ns(
        lab,
        ns,
        [
            *NO_SCAPY,
            "probe",
            "icmp",
            "--format",
            "json",
            "--target",
            "127.0.0.1",
            "--socket",
            "raw",
            "--count",
            "1",
        ],
    )
    assert rc == 1
    (rec,) = json.loads(out)
    assert rec["tags"]["result"] == "error"
    assert "pip install 'nhs-netready[raw-icmp]'" in rec["fields"]["reason"]
    assert "Traceback" not in err


def test_neither_socket_permitted(lab: Lab) -> None:
    """The router namespace keeps the kernel's default range (1 0: no group): as nobody,
    one failed record whose reason names both ways out."""
    rc, out, err = in_ns(
        lab, lab.router_ns, [*AS_NOBODY, *icmp_cli("--target", "127.0.0.1", "--count", "1")]
    )
    assert rc == 1
    (rec,) = json.loads(out)
    reason = rec["fields"]["reason"]
    assert rec["tags"]["result"] == "error"
    assert "CAP_NET_RAW" in reason and "ping_group_range" in reason, reason
    assert "Traceback" not in err and err.count("\n") == 1


# ---------------------------------------------------------------------------- wire


def test_echo_request_bytes() -> None:
    # RFC 792: type 8 (IPv4) / RFC 4443 4.1: type 128 (IPv6), code 0, checksum and identifier
    # left for the kernel, then the sequence number, then the data.
    assert (
        wire.echo_request(socket.AF_INET, 0x1234, b"ab")
        == bytes.fromhex("0800000000001234") + b"ab"
    )
    assert wire.echo_request(socket.AF_INET6, 0x10001, b"") == bytes.fromhex("8000000000000001")


def test_parse_echo_reply() -> None:
    assert wire.parse_echo_reply(socket.AF_INET, bytes.fromhex("0000abcd00070009") + b"x") == (7, 9)
    assert wire.parse_echo_reply(socket.AF_INET6, bytes.fromhex("8100abcd00070009")) == (7, 9)
    assert wire.parse_echo_reply(socket.AF_INET, bytes.fromhex("8100abcd00070009")) is None
    assert wire.parse_echo_reply(socket.AF_INET, bytes.fromhex("0301abcd")) is None  # short
    assert wire.parse_echo_reply(socket.AF_INET, bytes.fromhex("0301abcd0000000045")) is None


def test_wire_against_the_kernel(lab: Lab) -> None:
    """A datagram socket's reply, read raw in the namespace: the kernel kept our sequence and
    payload, wrote its identifier (the socket's port) and a valid checksum."""
    code = (
        "import socket, select, sys\n"
        "from netready.probes.icmp import wire\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n"
        "s.sendto(wire.echo_request(socket.AF_INET, 4242, b'netready'), ('127.0.0.1', 0))\n"
        "assert select.select([s], [], [], 5)[0]\n"
        "data = s.recv(100)\n"
        "print(data.hex(), s.getsockname()[1], wire.parse_echo_reply(socket.AF_INET, data))\n"
    )
    rc, out, err = in_ns(lab, lab.site_ns("practice"), [*AS_NOBODY, PY, "-c", code])
    assert rc == 0, err
    hexdata, port, parsed = out.split(" ", 2)
    data = bytes.fromhex(hexdata)
    assert data[0] == 0 and data.endswith(b"netready")
    assert parsed.strip() == f"({port}, 4242)"
    total = sum(
        int.from_bytes(data[i : i + 2].ljust(2, b"\0"), "big") for i in range(0, len(data), 2)
    )
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF  # RFC 1071: the ones' complement sum of a valid message


def test_agent_unit_needs_no_capability() -> None:
    """What the run above proves is what the unit asks for: no capability, and the sysctl
    file that lets the datagram socket work."""
    unit = (ROOT / "deploy" / "netready-agent.service").read_text().splitlines()
    keys = dict(line.split("=", 1) for line in unit if "=" in line and not line.startswith("#"))
    assert keys["CapabilityBoundingSet"] == "" and keys["AmbientCapabilities"] == ""
    assert keys["User"] == "netready" and "CAP_" not in "\n".join(
        line for line in unit if not line.startswith("#")
    )
    conf = (ROOT / "deploy" / "99-netready-ping.conf").read_text().splitlines()
    assert "net.ipv4.ping_group_range = 0 2147483647" in conf
