"""`netready serve`: the speed endpoint refuses missing/wrong tokens and over-limit clients.

Real aiohttp server on loopback, real HTTP clients (aiohttp and raw sockets), and the real
command in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from probes.serve import Limits, SpeedServer, serve_command

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "t0ken-for-tests-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _with_server(limits: Limits, fn):  # type: ignore[no-untyped-def]
    srv = SpeedServer(TOKEN, limits)
    port = await srv.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            return await fn(srv, http, port)
    finally:
        await srv.close()


def test_token_required_on_every_path() -> None:
    async def body(srv, http, port):  # type: ignore[no-untyped-def]
        out = {}
        for method, path in (
            ("GET", "/download?bytes=1000"),
            ("POST", "/upload"),
            ("GET", "/ping"),
        ):
            for name, headers in (
                ("none", {}),
                ("wrong", {"Authorization": "Bearer nope-nope"}),
                ("basic", {"Authorization": f"Basic {TOKEN}"}),
                ("prefix", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
            ):
                async with http.request(method, path, headers=headers, data=b"x" * 100) as r:
                    out[(path, name)] = (
                        r.status,
                        r.headers.get("WWW-Authenticate"),
                        len(await r.read()),
                    )
        async with http.get("/download?bytes=12345", headers=AUTH) as r:
            good = (r.status, len(await r.read()))
        return out, good

    out, good = asyncio.run(_with_server(Limits(), body))
    for key, (status, www, n) in out.items():
        assert status == 401, key
        assert www and www.startswith("Bearer"), key
        assert n < 200, key  # an error body, never test data
    assert good == (200, 12345)


def test_download_upload_ping_contract() -> None:
    async def body(srv, http, port):  # type: ignore[no-untyped-def]
        async with http.get("/download?bytes=300000&test=abc", headers=AUTH) as r:
            data = await r.read()
            assert r.headers["Content-Length"] == "300000"
        async with http.post("/upload?test=abc", headers=AUTH, data=b"z" * 250_000) as r:
            up = await r.json()
        async with http.get("/ping?test=abc", headers=AUTH) as r:
            ping = await r.json()
        bad = []
        for q in (
            "/download",
            "/download?bytes=-1",
            "/download?bytes=x",
            "/download?bytes=10&test=has%20space",
        ):
            async with http.get(q, headers=AUTH) as r:
                bad.append(r.status)
        return data, up, ping, bad

    data, up, ping, bad = asyncio.run(_with_server(Limits(), body))
    assert len(data) == 300_000
    assert len(set(data[:65536])) > 250  # incompressible, not zeros
    assert up == {"bytes": 250_000}
    assert ping["rx_bytes"] == 250_000 and ping["tx_bytes"] == 300_000
    assert ping["rx_t"] > 0 and ping["retransmits"] == 0
    assert bad == [400, 400, 400, 400]


def test_over_limit_clients_get_429_with_retry_after() -> None:
    lim = Limits(max_rate_mbps=4.0, max_bytes=3_000_000, max_tests=1, max_streams=2)

    async def body(srv, http, port):  # type: ignore[no-untyped-def]
        res = {}
        # test A holds two slow downloads open (4 Mbit/s => 2 x 400 kB takes ~1.6 s)
        a1 = asyncio.create_task(http.get("/download?bytes=400000&test=A", headers=AUTH))
        a2 = asyncio.create_task(http.get("/download?bytes=400000&test=A", headers=AUTH))
        await asyncio.sleep(0.3)
        async with http.get("/download?bytes=1000&test=A", headers=AUTH) as r:
            res["third_stream"] = (r.status, r.headers.get("Retry-After"))
        async with http.get("/download?bytes=1000&test=B", headers=AUTH) as r:
            res["second_test"] = (r.status, r.headers.get("Retry-After"))
        t0 = time.monotonic()
        for t in (a1, a2):
            r = await t
            assert r.status == 200
            await r.read()
            r.release()
        res["rate_s"] = time.monotonic() - t0 + 0.3
        await asyncio.sleep(1.1)  # test A is over (linger)
        async with http.get("/download?bytes=2500000&test=C", headers=AUTH) as r:
            res["over_bytes"] = (r.status, r.headers.get("Retry-After"))
        async with http.post("/upload?test=C", headers=AUTH, data=b"u" * 2_500_000) as r:
            res["over_bytes_up"] = r.status
        return res

    res = asyncio.run(_with_server(lim, body))
    assert res["third_stream"][0] == 429 and int(res["third_stream"][1]) >= 1
    assert res["second_test"][0] == 429 and int(res["second_test"][1]) >= 1
    # 800 kB at 4 Mbit/s shared by the client's connections: >= 1.6 s less the burst
    assert res["rate_s"] > 1.2
    assert res["over_bytes"][0] == 429 and int(res["over_bytes"][1]) > 3600
    assert res["over_bytes_up"] == 429


def test_cli_rejects_inline_token_in_one_line() -> None:
    r = CliRunner().invoke(serve_command, ["--listen", "127.0.0.1:1", "--token", "hunter2hunter2"])
    assert r.exit_code == 2, r.output
    assert "secret given inline" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(serve_command, ["--listen", "127.0.0.1:1", "--token", "env:NR_UNSET_X"])
    assert r.exit_code == 2 and "NR_UNSET_X is not set" in r.output
    assert len(r.output.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_in_a_subprocess() -> None:
    port = _free_port()
    env = {**os.environ, "NR_TEST_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "probes.serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--token",
            "env:NR_TEST_TOKEN",
        ],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in (p.stderr.readline() if p.stderr else "")

        async def go():  # type: ignore[no-untyped-def]
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                async with http.get("/ping") as r1:
                    s1 = r1.status
                async with http.get("/ping", headers=AUTH) as r2:
                    s2 = r2.status
            return s1, s2

        assert asyncio.run(go()) == (401, 200)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    assert p.returncode == 0


@pytest.mark.parametrize("token", ["short", ""])
def test_short_tokens_refused(token: str) -> None:
    with pytest.raises(ValueError):
        SpeedServer(token)
