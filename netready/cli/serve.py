"""``netready serve``: the self-hosted speed-test endpoint (``servers/speed.py``; needs the
``server`` extra, aiohttp: without it the command says so in one line). It parses, checks what
the endpoint needs (``speed.endpoint``), sets up logging and serves until SIGTERM or SIGINT."""

from __future__ import annotations

import click

from netready.cli.base import Command
from netready.cli.options import listen_option, log_options, secret_option, tls_options
from netready.cli.servers import metrics_option, run_until_signalled, start_metrics
from netready.inventory import HeaderSecretRef
from netready.servers import speed
from netready.servers.speed import Limits

#: The endpoint's own limits, shown as the options' defaults.
LIMITS = Limits()


@click.command("serve", cls=Command)
@listen_option(
    default="0.0.0.0:8080",
    port_required=True,
    help="Address to listen on ([v6]:PORT for IPv6). Plain HTTP only on loopback unless "
    "--allow-plain-http.",
)
@secret_option(
    "--token",
    required=True,
    header=True,
    help="Bearer token clients must send (a reference, never inline).",
)
@click.option(
    "--max-rate-mbps",
    default=LIMITS.max_rate_mbps,
    show_default=True,
    help="Bit rate per client across all its connections, Mbit/s.",
)
@click.option(
    "--max-mb",
    default=LIMITS.max_bytes / 1e6,
    show_default=True,
    help="MB (1e6 bytes) per client per --window-s, both directions.",
)
@click.option(
    "--window-s",
    default=LIMITS.window_s,
    show_default=True,
    help="Length of the byte-allowance window, seconds.",
)
@click.option(
    "--max-tests", default=LIMITS.max_tests, show_default=True, help="Concurrent tests per client."
)
@click.option(
    "--max-streams", default=LIMITS.max_streams, show_default=True, help="Connections per test."
)
@click.option(
    "--max-request-mb",
    default=LIMITS.max_request_bytes / 1e6,
    show_default=True,
    help="Largest single download/upload, MB.",
)
@click.option(
    "--max-connections",
    default=LIMITS.max_connections,
    show_default=True,
    help="Open connections per client (an IPv6 client: its /64), checked when a connection "
    "is accepted, before anything is read; the next gets 429 and is closed.",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    default=LIMITS.idle_timeout_s,
    show_default=True,
    help="Seconds a connection gets to send a complete request head, from opening or from "
    "its previous response (and to finish a TLS handshake); idle or slow ones are closed.",
)
@click.option(
    "--stall-timeout",
    "stall_timeout_s",
    default=LIMITS.stall_timeout_s,
    show_default=True,
    help="Seconds a download or upload may move no byte before it is cut off.",
)
@click.option(
    "--congestion-control",
    default=None,
    metavar="NAME",
    help="TCP congestion control of the endpoint's connections (Linux; default: the "
    "system's), e.g. cubic: the sender's algorithm decides how full a line's buffer gets "
    "during a download test (cubic, the default of Windows, macOS and most Linux, fills it as "
    "a practice's traffic does; BBR keeps it short).",
)
@tls_options(
    plain_help="Serve plain HTTP on a non-loopback address. Every request carries the bearer "
    "token, and without TLS anyone on the path can read it and use the endpoint: only for "
    "a network you trust end to end (the lab, a private link).",
)
@metrics_option
@log_options(default_format="text")
def serve_command(
    listen: str,
    token: HeaderSecretRef,
    max_rate_mbps: float,
    max_mb: float,
    window_s: float,
    max_tests: int,
    max_streams: int,
    max_request_mb: float,
    max_connections: int,
    idle_timeout_s: float,
    stall_timeout_s: float,
    congestion_control: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    allow_plain_http: bool,
    metrics_listen: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """Run the self-hosted speed-test endpoint (download, upload sink, ping).

    Every request needs the bearer token (401 otherwise); a client over a limit gets 429
    with Retry-After. It never serves anyone without the token. The token travels in every
    request, so on any address but loopback the endpoint serves HTTPS (--tls-cert and
    --tls-key) unless told --allow-plain-http.
    """
    from netready import logs

    end = speed.endpoint(
        listen,
        token,
        tls_cert=tls_cert,
        tls_key=tls_key,
        allow_plain_http=allow_plain_http,
        congestion_control=congestion_control,
        max_rate_mbps=max_rate_mbps,
        max_bytes=int(max_mb * 1e6),
        window_s=window_s,
        max_tests=max_tests,
        max_streams=max_streams,
        max_request_bytes=int(max_request_mb * 1e6),
        max_connections=max_connections,
        idle_timeout_s=idle_timeout_s,
        stall_timeout_s=stall_timeout_s,
    )
    logs.setup(log_format, log_level)
    metrics = start_metrics(metrics_listen, listen)
    if metrics is not None:
        metrics.add("speed", end.server.snapshot)
    run_until_signalled(lambda stop: speed.serve_forever(*end.args(), stop=stop), metrics=metrics)
