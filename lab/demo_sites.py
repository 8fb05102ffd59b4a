"""The four emulated sites ``make demo`` builds: copper and fibre practices and a hospital.

Keys are site names (also lab namespace suffixes); values are profile names from
``lab.netns.PROFILES`` (or custom profile strings that ``parse_profile`` accepts).
"""

from __future__ import annotations

DEMO_SITES: dict[str, str] = {
    "adsl-practice": "adsl",  # GP practice still on ADSL2+ (7 / 0.8 Mbit/s, deep buffer)
    "fttc-practice": "fttc40",  # GP practice on FTTC (36 / 9 Mbit/s)
    "fttp-practice": "fttp",  # GP practice on full fibre (150 / 30 Mbit/s)
    "hospital": "ethernet",  # acute hospital on a leased line (100 / 100 Mbit/s)
}
