"""The four emulated sites ``make demo`` builds: copper and fibre practices and a hospital.

Keys are site names (also lab namespace suffixes); values are profile names from
``lab.profiles.PROFILES`` or custom profile strings that ``parse_profile`` accepts.

Each demo site adds a fixed one-way delay through the lab's delay line, typical of the path
from such a line to a central data centre (ADSL interleaving adds most), so idle round trips
look like a real estate's rather than a loopback's.
"""

from __future__ import annotations

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
