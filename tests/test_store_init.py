"""``netready store init`` / ``store backfill`` on a real influxd (Debian 1.6).

The test server runs with its continuous-query and retention services off (tests/influxd.py),
so nothing happens behind a test's back: ``backfill`` runs the continuous queries' own
``SELECT ... INTO`` over a range, exactly what the CQ service runs every hour.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from netready import retention
from netready.cli.store import store
from netready.influx import InfluxV1
from netready.inventory import StoreConfig
from netready.store import nearest_rank

HOUR = 3_600_000


def inventory(tmp_path: Path, url: str, db: str, kind: str = "influxdb_v1") -> str:
    p = tmp_path / "inv.yaml"
    store_line = f"{{kind: {kind}, url: '{url}', database: {db}}}" if url else "{kind: embedded}"
    p.write_text(
        f"version: 1\nstore: {store_line}\nsites:\n"
        "  - {ods: A81001, name: One, type: gp_practice, icb: QHM,\n"
        "     link: {tech: fttc, down_mbps: 40, up_mbps: 10}}\n"
    )
    return str(p)


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(store, list(args))
    return r.exit_code, r.stdout, r.stderr


def layout(client: InfluxV1, db: str) -> tuple[dict[str, tuple[str, bool]], list[str]]:
    rps = {
        str(r["name"]): (str(r["duration"]), bool(r["default"]))
        for res in client.query(f'SHOW RETENTION POLICIES ON "{db}"', epoch=None)
        for r in res.dicts()
    }
    cqs = sorted(retention._cqs(client, db))
    return rps, cqs


def test_init_creates_then_changes_nothing(tmp_path: Path, influxd: object) -> None:
    url = influxd.url  # type: ignore[attr-defined]
    db = "store_init_fresh"
    inv = inventory(tmp_path, url, db)
    code, out, err = run("init", "-i", inv, "--format", "json")
    assert code == 0, err
    first = json.loads(out)
    assert first["changed"] == 6  # database, 2 policies, 3 continuous queries
    client = InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db))
    rps, cqs = layout(client, db)
    assert rps["raw"] == ("720h0m0s", True)  # the agents' writes (no rp) land in raw
    assert rps["hourly"] == ("17520h0m0s", False)
    assert [c.rsplit("_", 1)[0] for c in cqs] == [
        "netready_hourly_media",
        "netready_hourly_rtt",
        "netready_hourly_throughput",
    ]
    code, out, err = run("init", "-i", inv)
    assert code == 0, err
    assert "nothing changed: already set up" in err
    assert all(line.startswith("unchanged") for line in out.splitlines()), out
    assert layout(client, db) == (rps, cqs)

    # a new raw duration alters the policy; a new resample window replaces the CQs (1.x cannot
    # alter a continuous query) and leaves exactly one per measurement
    code, out, err = run("init", "-i", inv, "--raw-duration", "14d", "--resample-for", "3h")
    assert code == 0, err
    assert "altered   retention policy raw (30d, default -> 14d, default)" in out
    assert out.count("dropped") == 3 and out.count("created   continuous query") == 3
    rps2, cqs2 = layout(client, db)
    assert rps2["raw"] == ("336h0m0s", True)
    assert len(cqs2) == 3 and not set(cqs2) & set(cqs)
    assert all("FOR 3h" in q for q in retention._cqs(client, db).values())
    client.close()


def test_init_refuses_bad_input(tmp_path: Path, influxd: object) -> None:
    url = influxd.url  # type: ignore[attr-defined]
    inv = inventory(tmp_path, url, "store_init_bad")
    code, _out, err = run("init", "-i", inv, "--raw-duration", "30 days")
    assert code == 2
    assert err.strip().splitlines() == [
        "Error: duration '30 days': use a whole number and w, d, h, m or s (e.g. 30d)"
    ]
    code, _out, err = run("init", "-i", inv, "--hourly-rp", "raw")
    assert code == 2 and "different names" in err
    code, _out, err = run("init", "-i", inventory(tmp_path, "", "x"))
    assert code == 2 and "store kind embedded" in err and "docs/scaling.md" in err
    assert "Traceback" not in err


def test_backfill_keeps_nearest_rank_percentiles_and_counts(
    tmp_path: Path, influxd: object
) -> None:
    """The hourly point of a series holds the nearest-rank p10/p50/p95 and the count of its
    hour's raw points (the same arithmetic as the report's), per tag set, failures counted."""
    url = influxd.url  # type: ignore[attr-defined]
    db = "store_init_backfill"
    inv = inventory(tmp_path, url, db)
    assert run("init", "-i", inv)[0] == 0
    client = InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db))
    import time

    h0 = (int(time.time() * 1000) // HOUR - 5) * HOUR
    vals = [float((i * 37) % 23) for i in range(12)]  # one hour of 5-minute windows
    lines = [
        f"rtt,site=A81001,target=core,result=ok rtt_p50_ms={v!r},loss_pct=0.0 {h0 + i * 300_000}"
        for i, v in enumerate(vals)
    ]
    lines.append(f'rtt,site=A81001,target=core,result=timeout reason="no reply" {h0 + 1000}')
    lines.append(f"rtt,site=A81001,target=core,result=ok rtt_p50_ms=99.0 {h0 + HOUR}")
    client.write_lines(lines)
    code, _out, err = run("backfill", "-i", inv, "--since", "1d")
    assert code == 0, err
    assert "backfilled" in err
    rows = client.query('SELECT * FROM "hourly"."rtt" WHERE time >= now() - 1d GROUP BY "result"')
    got = {(r.tags["result"], row["time"]): row for r in rows for row in r.dicts()}
    ok = got[("ok", h0)]
    assert ok["rtt_p50_ms_n"] == 12 and ok["loss_pct_n"] == 12
    for p in (10, 50, 95):
        assert ok[f"rtt_p50_ms_p{p}"] == sorted(vals)[nearest_rank(len(vals), p) - 1], p
    assert got[("timeout", h0)]["reason_n"] == 1
    assert got[("ok", h0 + HOUR)]["rtt_p50_ms_p95"] == 99.0
    assert got[("ok", h0 + HOUR)]["rtt_p50_ms_n"] == 1
    # a second backfill of the same range rewrites the same points (no doubles), and says so
    # on stdout as JSON with --format json
    first = int(err.split("backfilled ")[1].split()[0])
    code, out, _err = run("backfill", "-i", inv, "--since", "1d", "--format", "json")
    assert code == 0 and json.loads(out) == {"hourly_points": first, "since": "1d"}, out
    again = client.query(
        'SELECT count("rtt_p50_ms_n") FROM "hourly"."rtt" WHERE time >= now() - 1d'
    )
    assert again[0].values[0][1] == 2
    client.close()


@pytest.mark.parametrize("text", ["0h", "30", "1m", "2y"])
def test_durations_outside_influxql_are_refused(text: str) -> None:
    with pytest.raises(retention.ConfigError):
        retention.parse_duration(text)


def test_a_site_changing_technology_keeps_one_series(influxdb: tuple[str, str]) -> None:
    """The declared tech travels with a site's tags (``Site.tags``) but is stored as a field
    (records.FIELD_TAGS): after an fttc -> fttp upgrade the site's rtt history is one series,
    the newest point says fttp, and the tech is still readable per point. ``readiness`` keeps
    tech as a tag (the estate dashboards group verdicts by it)."""
    from netready.inventory import loads
    from netready.records import Record

    url, db = influxdb
    client = InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db))
    text = (
        "version: 1\nsites:\n  - {{ods: A81001, name: One, type: gp_practice, icb: QHM,\n"
        "     link: {{tech: {tech}, down_mbps: 40, up_mbps: 10}}}}\n"
    )
    t = 1_700_000_000_000
    recs = []
    for i, tech in enumerate(("fttc", "fttc", "fttp", "fttp")):
        site = loads(text.format(tech=tech)).sites[0]
        recs.append(
            Record(
                "rtt", {**site.tags, "target": "core"}, {"rtt_p50_ms": 10.0 + i}, t + i * 300_000
            )
        )
        recs.append(
            Record("readiness", {**site.tags, "profile": "gp_video"}, {"ready": True}, t + i)
        )
    client.write(recs)
    series = [r[0] for res in client.query('SHOW SERIES FROM "rtt"') for r in res.values]
    assert series == ["rtt,icb=QHM,site=A81001,target=core"]
    card = client.query("SHOW SERIES CARDINALITY")
    assert sum(int(v[0]) for res in card for v in res.values) == 3  # rtt 1 + readiness 2
    rows = client.query('SELECT "tech", "rtt_p50_ms" FROM "rtt"')[0].values
    assert [r[1] for r in rows] == ["fttc", "fttc", "fttp", "fttp"]
    assert client.query('SELECT LAST("tech") FROM "rtt"')[0].values[0][1] == "fttp"
    by_tech = client.query('SELECT COUNT("ready") FROM "readiness" GROUP BY "tech"')
    assert {r.tags["tech"]: r.values[0][1] for r in by_tech} == {"fttc": 2, "fttp": 2}
    client.close()
