"""netready: network readiness for video consultations at NHS sites.

The core every part shares: records, inventory, spool, InfluxDB, registry, stats.
"""

__version__ = "0.1.0"
