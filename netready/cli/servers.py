"""The central UDP servers' commands: ``netready reflector`` (TWAMP-light, optionally with a
media responder in the same process) and ``netready responder`` (the video-call probe's far
end); ``netready serve`` (the speed endpoint, the ``server`` extra) is ``netready/cli/serve.py``.
The servers are ``servers/reflector.py`` and ``servers/responder.py``; the commands parse,
set up logging (``netready/logs.py``: journald priorities under systemd, as the agent's), and
run them until SIGTERM or SIGINT (exit 0, ``run_until_signalled``). An address that cannot be
bound is one line, exit 1. ``--metrics [HOST:]PORT`` (every server command) serves Prometheus
``/metrics`` on a listener of its own (``servers/metrics.py``, docs/prometheus.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import click

from netready import platform
from netready.cli.base import Command
from netready.cli.options import allow_option, listen_option, log_options, secret_option
from netready.inventory import SecretRef
from netready.servers.metrics import Metrics
from netready.servers.reflector import Reflector

#: The reflector's own defaults, shown as the options' defaults.
REFLECTOR = Reflector.__dataclass_fields__

#: A server to run: called with the event that stops it (it may also just be cancelled).
Job = Callable[[asyncio.Event], Coroutine[Any, Any, Any]]


def metrics_option(f: Any) -> Any:
    """``--metrics [HOST:]PORT`` (parameter ``metrics_listen``): off unless given."""
    return click.option(
        "--metrics",
        "metrics_listen",
        default=None,
        metavar="[HOST:]PORT",
        help="Serve Prometheus /metrics here (a port alone: on 127.0.0.1), a listener of its "
        "own, never the measurement port. Off unless given.",
    )(f)


def start_metrics(value: str | None, *listens: str | None) -> Metrics | None:
    """The ``/metrics`` listener ``--metrics`` asks for (None: not asked), checked against the
    measurement ports ``listens``; a ConfigError (exit 2) or ServerError (exit 1) otherwise."""
    if not value:
        return None
    from netready.servers.metrics import parse_listen, warn_if_exposed

    host, port = parse_listen(value)
    for listen in listens:
        if listen:
            parse_listen(value, listen)
    m = Metrics()
    bound = m.start(host, port)
    log = logging.getLogger("netready.metrics")
    log.info("/metrics on http://%s:%d/metrics", *bound)
    warning = warn_if_exposed(host)
    if warning:
        log.warning("%s", warning)
    return m


def run_until_signalled(*jobs: Job, metrics: Metrics | None = None) -> None:
    """Run ``jobs`` together until SIGTERM/SIGINT or until one of them fails (then its
    error is raised, after the others have closed). ``metrics``: closed at the end."""
    try:
        _run(*jobs)
    finally:
        if metrics is not None:
            metrics.close()


def _run(*jobs: Job) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        platform.on_stop_signals(loop, stop.set)
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(job(stop)) for job in jobs]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for t in tasks:
            if t in done and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    platform.run(main())


@click.command("reflector", cls=Command)
@listen_option(default="0.0.0.0:862", help="Address to listen on ([::]:862 for IPv6 and IPv4).")
@allow_option
@click.option(
    "--max-pps",
    default=REFLECTOR["max_pps_per_source"].default,
    show_default=True,
    help="Packets/s per source.",
)
@click.option(
    "--max-kbps",
    default=REFLECTOR["max_kbps_per_source"].default,
    show_default=True,
    help="kbit/s per source.",
)
@click.option(
    "--max-total-kbps",
    default=REFLECTOR["max_kbps_total"].default,
    show_default=True,
    help="kbit/s in total.",
)
@click.option(
    "--media",
    "media_listen",
    default=None,
    metavar="HOST:PORT",
    help="Also run the media responder (video-call probe far end) here.",
)
@secret_option(help="Shared secret the media responder requires (a reference, never inline).")
@metrics_option
@log_options(default_format="text")
def reflector_command(
    listen: str,
    allow: tuple[str, ...],
    max_pps: float,
    max_kbps: float,
    max_total_kbps: float,
    media_listen: str | None,
    secret: SecretRef | None,
    metrics_listen: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """Answer TWAMP-light test packets (RFC 5357) from allowed sources.

    Never replies with more bytes than it received, and rate-limits each source.
    """
    from netready import logs
    from netready.servers import reflector

    logs.setup(log_format, log_level)
    metrics = start_metrics(metrics_listen, listen, media_listen)
    jobs: list[Job] = [
        lambda stop: reflector.serve(
            listen,
            allow,
            stop=stop,
            metrics=metrics,
            max_pps_per_source=max_pps,
            max_kbps_per_source=max_kbps,
            max_kbps_total=max_total_kbps,
        )
    ]
    if media_listen:
        from netready.servers import responder

        sec = secret.resolve() if secret else None
        jobs.append(
            lambda stop: responder.serve(media_listen, list(allow), secret=sec, metrics=metrics)
        )
    run_until_signalled(*jobs, metrics=metrics)


@click.command("responder", cls=Command)
@listen_option(default="0.0.0.0:5004", help="Address to listen on ([::]:5004 for IPv6 and IPv4).")
@allow_option
@secret_option(help="Require HMAC-authenticated session requests with this shared secret.")
@click.option(
    "--max-mbps-session",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Bandwidth cap per session (Mbit/s, each direction).",
)
@click.option(
    "--max-mbps-total",
    default=200.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Bandwidth cap over all sessions (Mbit/s, each direction).",
)
@click.option(
    "--max-duration",
    "max_duration_s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Longest session accepted, seconds.",
)
@click.option(
    "--max-sessions-per-source",
    default=64,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Concurrent sessions one source address may hold.",
)
@metrics_option
@log_options(default_format="text")
def responder_command(
    listen: str,
    allow: tuple[str, ...],
    secret: SecretRef | None,
    max_mbps_session: float,
    max_mbps_total: float,
    max_duration_s: float,
    max_sessions_per_source: int,
    metrics_listen: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """Answer emulated video calls from `netready probe media` (allowed sources only).

    A hello is first answered with a cookie no larger than itself; media goes only to an
    address that echoes it (no reflection, no amplification).
    """
    from netready import logs
    from netready.servers import responder

    sec = secret.resolve() if secret else None
    logs.setup(log_format, log_level)
    metrics = start_metrics(metrics_listen, listen)
    run_until_signalled(
        lambda stop: responder.serve(
            listen,
            list(allow),
            sec,
            max_mbps_session,
            max_mbps_total,
            max_duration_s=max_duration_s,
            max_sessions_per_source=max_sessions_per_source,
            metrics=metrics,
        ),
        metrics=metrics,
    )
