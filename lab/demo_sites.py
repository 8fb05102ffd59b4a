"""The four emulated sites ``make demo`` builds: copper and fibre practices and a hospital.

Keys are site names (also lab namespace suffixes); values are profile names from
``lab.profiles.PROFILES`` or custom profile strings that ``parse_profile`` accepts.

Each demo site adds a fixed one-way delay through the lab's delay line, typical of the path
from such a line to a central data centre (ADSL interleaving adds most), so idle round trips
look like a real estate's rather than a loopback's.
"""

from __future__ import annotations

from netready.lab.routers import EmulatedRouter

DEMO_SITES: dict[str, str] = {
    # GP practice still on ADSL2+ (7 / 0.8 Mbit/s, deep buffer, interleaved: ~30 ms idle RTT)
    "adsl-practice": "base=adsl,delay_ms=15,keep_order=1",
    # GP practice on FTTC (36 / 9 Mbit/s, ~12 ms idle RTT)
    "fttc-practice": "base=fttc40,delay_ms=6,keep_order=1",
    # GP practice on full fibre (150 / 30 Mbit/s, ~6 ms idle RTT)
    "fttp-practice": "base=fttp,delay_ms=3,keep_order=1",
    # acute hospital on a leased line (100 / 100 Mbit/s, ~4 ms idle RTT)
    "hospital": "base=ethernet,delay_ms=2,keep_order=1",
}

#: Each demo site's router: a real recording (tests/data/snmprec, see its EXPECTED.md) served
#: by snmpsim on the site's side of the link, polled by the site's agent (collector snmp).
DEMO_ROUTERS: dict[str, EmulatedRouter] = {
    # The contradiction: the inventory says ADSL, the router is a G.fast/VDSL2 modem in sync.
    # There is no public recording of an ADSL2+ CPE in sync (every ADSL one found has its
    # line untrained), so the closest real copper CPE stands in, and it contradicts the
    # declaration as an upgraded line the inventory never caught up with would.
    "adsl-practice": EmulatedRouter(
        "zyxelac_xmg3927",
        "zyxel",
        "Zyxel XMG3927 G.fast/VDSL2 modem-router in sync (closest real stand-in for ADSL2+)",
    ),
    # FTTC: the DrayTek Vigor165 VDSL2 modem with its line figures (VDSL2-LINE-MIB rates,
    # ADSL-LINE-MIB margins and attenuation).
    "fttc-practice": EmulatedRouter(
        "draytek_vdsl", "draytek", "DrayTek Vigor165 VDSL2 modem in showtime, with line figures"
    ),
    # FTTP: a CPE whose WAN is an optical 1000BASE-X port (the router terminates fibre).
    "fttp-practice": EmulatedRouter(
        "ifotec_cpefibre-g4g", "generic", "Ifotec CPEFibre-G4G, WAN on a 1000BASE-X fibre port"
    ),
    # Leased line: an ISR whose WAN is an Ethernet handoff (alias WAN:...).
    "hospital": EmulatedRouter(
        "iosxe_isr4321", "cisco_iosxe", "Cisco ISR4321, leased line on an Ethernet handoff"
    ),
}
