"""SSH collector: TextFSM parsing of recorded router CLI outputs, then a real OpenSSH sshd on a
loopback port (throwaway host and user keys) that replays those outputs through a
ForceCommand script, so paramiko, host-key checking, timeouts and the size cap run for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.collectors import ssh
from netready.collectors.dsl import DslLine
from netready.collectors.ssh import parse

from netready import inventory, registry
from netready.cli.plugins import collect
from netready.errors import ConfigError, ParseError
from netready.records import Record

CLI = Path(__file__).parent / "data" / "router-cli"
C1112 = "cisco_iosxe_c1112_show_controller_vdsl.txt"
C1113 = "cisco_iosxe_c1113_show_controller_vdsl.txt"
ADSL = "cisco_iosxe_show_controller_vdsl_adsl2plus_annexj.txt"
SFP = "cisco_iosxe_sfp_show_controller_vdsl.txt"
HUAWEI = "huawei_vrp_ar_display_interface.raw"
C867 = "cisco_ios_c867vae_show_controllers_vdsl.txt"


def text(name: str) -> str:
    return (CLI / name).read_bytes().decode("utf-8")


# ------------------------------------------------------------------------- parsers


def test_c1112_vdsl2_crlf_output() -> None:
    assert "\r\n" in text(C1112)  # the recording keeps the router's CRLF line endings
    [ln] = ssh.parse_cisco_controller_vdsl(text(C1112))
    assert ln.ifname == "VDSL 0/2/0" and ln.line_up is True
    assert ln.detected_tech == "vdsl2" and ln.detected_by == "cli"
    assert ln.mode == "G.993.2 (VDSL2) Profile 17a"
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (100014.0, 57746.0)
    assert (ln.attainable_down_kbps, ln.attainable_up_kbps) == (157223.0, 57590.0)
    assert (ln.snr_margin_down_db, ln.snr_margin_up_db) == (20.4, 6.1)
    assert (ln.atten_down_db, ln.atten_up_db) == (2.0, 0.0)
    assert (ln.interleave_delay_ms, ln.interleave_delay_up_ms) == (7.0, 0.0)
    assert (ln.crc_errors_down, ln.crc_errors_up) == (608, 1908)


def test_c1113_vdsl2_tabs() -> None:
    [ln] = ssh.parse_cisco_controller_vdsl(text(C1113))
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (100014.0, 60015.0)
    assert (ln.attainable_down_kbps, ln.attainable_up_kbps) == (154476.0, 61662.0)
    assert (ln.snr_margin_down_db, ln.snr_margin_up_db) == (20.0, 6.8)
    assert ln.atten_down_db == 0.9


def test_adsl2plus_annex_j_on_the_same_command() -> None:
    [ln] = ssh.parse_cisco_controller_vdsl(text(ADSL))
    assert ln.detected_tech == "adsl" and ln.mode == "G.992.5 (ADSL2+) Annex J"
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (23839.0, 2079.0)
    assert (ln.atten_down_db, ln.atten_up_db) == (7.9, 2.0)
    assert (ln.snr_margin_down_db, ln.snr_margin_up_db) == (7.0, 7.3)
    # "Attainable Rate: 0 kbits/s" while synced: not reported, so absent rather than 0.
    assert ln.attainable_down_kbps is None and ln.attainable_up_kbps is None


def test_sfp_modem_with_missing_upstream_attenuation() -> None:
    [ln] = ssh.parse_cisco_controller_vdsl(text(SFP))
    assert ln.ifname == "VDSL 0/0/0"
    assert ln.atten_down_db == 9.7 and ln.atten_up_db is None  # "dB" with no number
    assert (ln.snr_margin_down_db, ln.snr_margin_up_db) == (6.2, 14.3)
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (95020.0, 55434.0)
    assert (ln.interleave_delay_ms, ln.interleave_delay_up_ms) == (7.0, 3.0)
    assert (ln.crc_errors_down, ln.crc_errors_up) == (388, 27157)


def test_rawcli_summary() -> None:
    [ln] = ssh.parse_cisco_rawcli_summary(text("cisco_iosxe_test_vdsl_rawcli_summary.txt"))
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (90287.0, 60014.0)  # "US/DS" order
    assert ln.detected_tech == "vdsl2" and ln.line_up is True and "12a" in (ln.mode or "")


def test_huawei_display_interface_finds_the_vdsl_port() -> None:
    lines = ssh.parse_huawei_display_interface(text(HUAWEI))
    assert [(ln.ifname, ln.detected_tech, ln.line_up) for ln in lines] == [
        ("Ethernet0/0/0", "vdsl2", False)
    ]
    heads = [
        ln.split()[0]
        for ln in text(HUAWEI).splitlines()
        if " current state :" in ln and not ln.startswith("Line protocol")
    ]
    # ntc-templates' template reads every interface (state, protocol); ours only the PHY type
    rows = parse.ntc_rows("huawei_vrp", "display interface", text(HUAWEI))
    assert [r["interface"] for r in rows] == heads
    gi2 = next(r for r in rows if r["interface"] == "GigabitEthernet0/0/2")
    assert (gi2["link_status"], gi2["protocol_status"]) == ("UP", "UP")
    phy = ssh.textfsm_rows("huawei_vrp_display_interface_phy", text(HUAWEI))
    assert [r["INTERFACE"] for r in phy] == heads
    assert {r["INTERFACE"]: r["PHY_TYPE"] for r in phy if r["PHY_TYPE"]} == {
        "Ethernet0/0/0": "VDSL"
    }


def test_c867vae_classic_ios_show_controllers_vdsl() -> None:
    """Classic IOS (the C867VAE/C887VA of UK business VDSL2): same layout as IOS-XE, decimal
    interleave figures, and per-band tables whose headings must not be read as the line's."""
    [ln] = ssh.parse_output("cisco_ios", "show controllers vdsl 0", text(C867))
    assert ln.ifname == "VDSL 0" and ln.line_up is True and ln.detected_tech == "vdsl2"
    assert ln.mode == "G.993.2 (VDSL2) Profile 17a"
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (103998.0, 48095.0)
    assert (ln.attainable_down_kbps, ln.attainable_up_kbps) == (136801.0, 47608.0)
    assert (ln.snr_margin_down_db, ln.snr_margin_up_db) == (12.6, 5.5)  # not the per-band 13.0
    assert (ln.atten_down_db, ln.atten_up_db) == (3.3, 0.0)  # not the per-band 1.3
    assert (ln.interleave_delay_ms, ln.interleave_delay_up_ms) == (1.0, 1.0)
    assert (ln.crc_errors_down, ln.crc_errors_up) == (147137, 85852)


def test_huawei_output_ntc_rejects_is_a_parse_error() -> None:
    bad = text(HUAWEI).replace("Line protocol current state : DOWN", "!! garbled line", 1)
    with pytest.raises(ParseError, match="huawei_vrp: 'display interface' output not recognised"):
        ssh.parse_output("huawei_vrp", "display interface", bad)


def test_router_error_and_garbage_are_parse_errors() -> None:
    with pytest.raises(ParseError, match="refused by the router"):
        ssh.parse_output(
            "cisco_iosxe",
            "show controller vdsl 0/2/0",
            "        ^\n% Invalid input detected at '^' marker.\n",
        )
    with pytest.raises(ParseError, match="not recognised"):
        ssh.parse_output("cisco_iosxe", "show controller vdsl 0/2/0", "hello\nworld\n")


def test_ssh_and_snmp_records_share_one_schema() -> None:
    """Every field the SSH path fills is a DslLine field the SNMP path fills too."""
    names = set(DslLine(ifname="x").fields())
    for f in (C1112, C1113, ADSL, SFP):
        [ln] = ssh.parse_cisco_controller_vdsl(text(f))
        filled = {k for k, v in ln.fields().items() if v is not None}
        assert filled <= names
        assert {"sync_down_kbps", "sync_up_kbps", "snr_margin_down_db", "atten_down_db"} <= filled


# ---------------------------------------------------------------------- real sshd

REPLAY = """\
#!/bin/sh
# ForceCommand: answer like a router, from recorded outputs.
case "$SSH_ORIGINAL_COMMAND" in
  "show controller vdsl 0/2/0") exec cat '{d}/{c1112}' ;;
  "show controller vdsl 0/3/0") exec cat '{d}/{c1113}' ;;
  "show controller vdsl 0/1/0") exec cat '{d}/{adsl}' ;;
  "show controller vdsl 0/0/0") exec cat '{d}/{sfp}' ;;
  "show controllers vdsl 0") exec cat '{d}/{c867}' ;;
  "display interface") exec cat '{d}/{huawei}' ;;
  "show controller vdsl 9/9/9") exec sleep 4 ;;
  "show controller vdsl 8/8/8") head -c 3000000 /dev/zero | tr '\\000' x ;;
  *) echo "        ^"; echo "% Invalid input detected at '^' marker."; exit 1 ;;
esac
"""

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowUsers {user}
ForceCommand /bin/sh {d}/replay.sh
LogLevel ERROR
"""


@dataclass
class Sshd:
    port: int
    dir: Path
    user: str
    host_pub: str  # "ssh-ed25519 AAAA..."

    @property
    def key(self) -> Path:
        return self.dir / "user_ed25519"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netready-test", "-f", str(path)],
        check=True,
    )


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replay(d: Path) -> None:
    for f in (C1112, C1113, ADSL, SFP, HUAWEI, C867):
        shutil.copy(CLI / f, d / f)
    (d / "replay.sh").write_text(
        REPLAY.format(d=d, c1112=C1112, c1113=C1113, adsl=ADSL, sfp=SFP, huawei=HUAWEI, c867=C867)
    )


#: A password-only router (many CPE have no key login): the same sshd, keys off.
PASSWORD_CONFIG = {
    "PubkeyAuthentication yes": "PubkeyAuthentication no",
    "PasswordAuthentication no": "PasswordAuthentication yes",
    "PermitRootLogin prohibit-password": "PermitRootLogin yes",
}


def _shadow_with(d: Path, user: str, password: str) -> Path:
    """A copy of /etc/shadow in which ``user`` has ``password`` (SHA-512 crypt): sshd reads
    it through a bind mount in a mount namespace of its own, so the system's is untouched."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = Path("/etc/shadow").read_text().splitlines()
    out = [
        ":".join([f[0], hashed, *f[2:]]) if f[0] == user else ln
        for ln, f in ((ln, ln.split(":")) for ln in lines)
    ]
    assert out != lines, f"{user} is not in /etc/shadow"
    shadow = d / "shadow"
    shadow.write_text("\n".join(out) + "\n")
    shadow.chmod(0o600)
    return shadow


@contextlib.contextmanager
def _running_sshd(password: str | None = None) -> Iterator[Sshd]:
    tmp = Path(tempfile.mkdtemp(prefix="nr-sshd-"))
    os.chmod(tmp, 0o700)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    _keygen(tmp / "host_ed25519")
    _keygen(tmp / "user_ed25519")
    _keygen(tmp / "stranger_ed25519")  # a key sshd does not know
    shutil.copy(tmp / "user_ed25519.pub", tmp / "authorized_keys")
    _replay(tmp)
    port = _free_tcp_port()
    user = getpass.getuser()
    config = SSHD_CONFIG.format(port=port, d=tmp, user=user)
    argv = ["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")]
    if password is not None:
        for a, b in PASSWORD_CONFIG.items():
            assert a in config
            config = config.replace(a, b)
        shadow = _shadow_with(tmp, user, password)
        script = 'mount --bind "$1" /etc/shadow && shift && exec "$@"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(shadow), *argv]  # fmt: skip
    (tmp / "sshd_config").write_text(config)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "sshd.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp / "sshd.log").read_text()
                time.sleep(0.1)
        host_pub = " ".join((tmp / "host_ed25519.pub").read_text().split()[:2])
        yield Sshd(port, tmp, user, host_pub)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with _running_sshd() as s:
        yield s


ROUTER_PASSWORD = "Vigor-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def password_sshd() -> Iterator[Sshd]:
    with _running_sshd(password=ROUTER_PASSWORD) as s:
        yield s


INVENTORY = """\
version: 1
sites:
  - ods: B82002
    name: Test surgery
    type: gp_practice
    icb: QWE
    link: {{tech: {tech}, down_mbps: 55, up_mbps: 10}}
    router:
      host: 127.0.0.1
      vendor: {vendor}
      ssh:
        port: {port}
        username: {user}
        {cred}
        known_hosts: "{kh}"
        timeout_s: 3
"""


def _site(
    tmp_path: Path,
    s: Sshd,
    kh: Path,
    tech: str = "fttc",
    vendor: str = "cisco_iosxe",
    key: Path | None = None,
    cred: str | None = None,
) -> tuple[Path, inventory.Site]:
    p = tmp_path / "inv.yaml"
    p.write_text(
        INVENTORY.format(
            tech=tech,
            vendor=vendor,
            port=s.port,
            user=s.user,
            kh=kh,
            cred=cred or f'key_file: "file:{key or s.key}"',
        )
    )
    return p, inventory.load(p).sites[0]


def _known(tmp_path: Path, s: Sshd) -> Path:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{s.port} {s.host_pub}\n")
    return kh


def _collect(site: inventory.Site, **spec: object) -> list[Record]:
    plugin = registry.get("collector", "ssh")
    return asyncio.run(plugin.run(registry.Context(site=site), plugin.make_spec(dict(spec))))


def test_sshd_cisco_vdsl2_equals_parsing_the_file(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd))
    [r] = _collect(site)
    assert r.ok and r.measurement == "dsl_line" and r.tags["method"] == "ssh"
    assert r.tags["site"] == "B82002" and r.tags["detected_tech"] == "vdsl2"
    [ln] = ssh.parse_cisco_controller_vdsl(text(C1112))
    for k, v in ln.fields().items():
        if v is not None:
            assert r.fields[k] == v, k
    assert r.fields["tech_mismatch"] is False
    assert r.fields["contract_down_pct_of_sync"] == pytest.approx(100 * 55000 / 100014)


def test_sshd_adsl_line_on_a_site_declared_fttc_is_flagged(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd))
    [r] = _collect(site, controller="0/1/0")
    assert r.tags["detected_tech"] == "adsl" and r.fields["tech_mismatch"] is True
    assert r.fields["sync_down_kbps"] == 23839.0


def test_sshd_huawei_display_interface(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd), vendor="huawei_vrp")
    [r] = _collect(site)
    assert r.ok and r.tags["ifname"] == "Ethernet0/0/0" and r.tags["detected_tech"] == "vdsl2"
    assert r.fields["line_up"] is False and "tech_mismatch" not in r.fields


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    _, site = _site(tmp_path, sshd, kh)
    [r] = _collect(site)
    assert r.result == "auth_failed"
    assert "not in" in r.fields["reason"] and "--trust-on-first-use" in r.fields["reason"]
    assert kh.read_text() == ""  # nothing recorded without the flag


def test_trust_on_first_use_records_the_key_then_checks_it(sshd: Sshd, tmp_path: Path) -> None:
    kh = tmp_path / "sub" / "known_hosts"  # does not exist yet
    _, site = _site(tmp_path, sshd, kh)
    [r] = _collect(site, trust_on_first_use=True)
    assert r.ok
    assert kh.read_text().split() == [f"[127.0.0.1]:{sshd.port}", *sshd.host_pub.split()]
    [r2] = _collect(site)  # no flag now: the recorded key is checked and accepted
    assert r2.ok
    assert len(kh.read_text().splitlines()) == 1


def test_changed_host_key_is_refused_even_with_tofu(sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _keygen(other)
    kh = tmp_path / "known_hosts"
    kh.write_text(
        f"[127.0.0.1]:{sshd.port} " + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n"
    )
    _, site = _site(tmp_path, sshd, kh)
    [r] = _collect(site, trust_on_first_use=True)
    assert r.result == "auth_failed" and "CHANGED" in r.fields["reason"]


def test_key_not_authorised_is_auth_failed(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd), key=sshd.dir / "stranger_ed25519")
    [r] = _collect(site)
    assert r.result == "auth_failed" and "authentication failed" in r.fields["reason"]


def test_silent_command_times_out(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd))
    t = time.monotonic()
    [r] = _collect(site, controller="9/9/9", read_timeout_s=1.0, command_timeout_s=2.0)
    assert time.monotonic() - t < 4
    assert r.result == "timeout" and "sent nothing for 1 s" in r.fields["reason"]


def test_output_cap(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd))
    [r] = _collect(site, controller="8/8/8", max_output_bytes=100_000)
    assert r.result == "error" and "100000 byte cap" in r.fields["reason"]


def test_router_refusing_the_command(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd))
    [r] = _collect(site, controller="7/7/7")
    assert r.result == "error" and "Invalid input detected" in r.fields["reason"]


def test_connection_refused(sshd: Sshd, tmp_path: Path) -> None:
    _, site = _site(tmp_path, sshd, _known(tmp_path, sshd))
    [r] = _collect(site, port=_free_tcp_port())
    assert r.result == "refused"


def test_cli_collect_ssh_tofu_json(sshd: Sshd, tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    inv, _ = _site(tmp_path, sshd, kh)
    res = CliRunner().invoke(
        collect,
        [
            "ssh",
            "--site",
            "B82002",
            "-i",
            str(inv),
            "--controller",
            "0/0/0",
            "--trust-on-first-use",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    [d] = json.loads(res.stdout)  # stdout is clean JSON; the TOFU notice went to stderr
    assert d["fields"]["snr_margin_up_db"] == 14.3 and "atten_up_db" not in d["fields"]
    assert "trust on first use" in res.stderr and kh.exists()
    # Unsupported vendor: a config error, exit 2, one line.
    inv2, _ = _site(tmp_path, sshd, kh, vendor="draytek")
    res = CliRunner().invoke(collect, ["ssh", "--site", "B82002", "-i", str(inv2)])
    assert res.exit_code == 2 and "no SSH command set" in res.output


# ------------------------------------------------------------ password SSH (no key login)


def test_password_login_reads_a_classic_ios_router(
    password_sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NR_T_ROUTER_PW", ROUTER_PASSWORD)
    _, site = _site(
        tmp_path, password_sshd, _known(tmp_path, password_sshd), vendor="cisco_ios",
        cred="password: env:NR_T_ROUTER_PW",
    )  # fmt: skip
    [r] = _collect(site)  # the controller defaults to "0" on classic IOS
    assert r.ok and r.tags["ifname"] == "VDSL 0" and r.tags["detected_tech"] == "vdsl2"
    assert (r.fields["sync_down_kbps"], r.fields["snr_margin_down_db"]) == (103998.0, 12.6)
    out, err = capfd.readouterr()
    assert ROUTER_PASSWORD not in out + err + repr(r)


def test_wrong_password_is_auth_failed_and_never_echoed(
    password_sshd: Sshd, tmp_path: Path
) -> None:
    wrong = "Wrong-" + os.urandom(6).hex()
    (tmp_path / "pw").write_text(wrong + "\n")
    _, site = _site(
        tmp_path, password_sshd, _known(tmp_path, password_sshd), vendor="cisco_ios",
        cred=f'password: "file:{tmp_path / "pw"}"',
    )  # fmt: skip
    [r] = _collect(site)
    assert r.result == "auth_failed" and "password authentication failed" in r.fields["reason"]
    assert wrong not in repr(r) and ROUTER_PASSWORD not in repr(r)


def test_key_against_a_password_only_router_is_auth_failed(
    password_sshd: Sshd, tmp_path: Path
) -> None:
    _, site = _site(tmp_path, password_sshd, _known(tmp_path, password_sshd), vendor="cisco_ios")
    [r] = _collect(site)
    assert r.result == "auth_failed" and "key authentication failed" in r.fields["reason"]


def test_key_and_password_key_refused_then_password_accepted(
    password_sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_ROUTER_PW", ROUTER_PASSWORD)
    cred = f'key_file: "file:{password_sshd.key}"\n        password: env:NR_T_ROUTER_PW'
    _, site = _site(
        tmp_path, password_sshd, _known(tmp_path, password_sshd), vendor="cisco_ios", cred=cred
    )
    [r] = _collect(site)
    assert r.ok and r.fields["sync_up_kbps"] == 48095.0


def test_password_must_be_a_reference_and_some_credential_given(sshd: Sshd, tmp_path: Path) -> None:
    kh = _known(tmp_path, sshd)
    with pytest.raises(ConfigError, match="secret given inline") as e:
        _site(tmp_path, sshd, kh, cred="password: hunter2-inline")
    assert "hunter2-inline" not in str(e.value)
    with pytest.raises(ConfigError, match="give key_file or password"):
        _site(tmp_path, sshd, kh, cred="# no key_file, no password")


def test_cli_collect_ssh_with_password_json(
    password_sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_ROUTER_PW", ROUTER_PASSWORD)
    inv, _ = _site(
        tmp_path, password_sshd, _known(tmp_path, password_sshd), vendor="cisco_ios",
        cred="password: env:NR_T_ROUTER_PW",
    )  # fmt: skip
    res = CliRunner().invoke(
        collect, ["ssh", "--site", "B82002", "-i", str(inv), "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    [d] = json.loads(res.stdout)
    assert d["fields"]["crc_errors_down"] == 147137
    assert ROUTER_PASSWORD not in res.stdout + res.stderr
