"""A shipping agent for the durability test: enqueue numbered records and ship them, forever.

Prints each sequence number after its enqueue has COMMITTED (so the parent knows what the
spool promised to keep), and ships small batches in between. The parent kills it with
SIGKILL at random moments. ``--drain`` only ships what is pending, then exits.
"""

from __future__ import annotations

import sys

from netready.influx import InfluxV1
from netready.inventory import StoreConfig
from netready.records import Record
from netready.shipper import Shipper
from netready.spool import Spool

BASE_MS = 1_700_000_000_000


def main() -> None:
    spool_path, url, db, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    drain = "--drain" in sys.argv
    sp = Spool(spool_path, ship=True, exclusive=True)  # one writer, as the agent
    w = InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db, timeout_s=5))
    sh = Shipper(sp, w, batch_size=37)
    if drain:
        res = sh.drain()
        print(f"drained {res.shipped} error={res.error}", flush=True)
        return
    seq = start
    while True:
        sp.enqueue([Record("dur", {"site": "Y81001", "result": "ok"}, {"seq": seq}, BASE_MS + seq)])
        print(seq, flush=True)
        seq += 1
        if seq % 10 == 0:
            sh.ship_batch()


if __name__ == "__main__":
    main()
