"""The operator's HTTP endpoint: ``/metrics`` (Prometheus' text format) and ``/healthz``.

Served with aiohttp when ``METRICS_PORT`` is set, on ``METRICS_HOST`` (127.0.0.1 by default),
from ``run()``'s start to the bot's close. ``/healthz`` is 200 while the gateway is connected
and the database answers a trivial query, else 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger("studio.metrics")
HEALTH_DB_TIMEOUT = 2.0


async def healthy(bot: StudioBot) -> tuple[bool, str]:
    """(healthy, why not) for ``/healthz``."""
    if not bot.is_ready() or bot.is_closed() or not math.isfinite(bot.latency):
        return False, "gateway not connected"
    try:
        await asyncio.wait_for(bot.storage.ping(), timeout=HEALTH_DB_TIMEOUT)
    except Exception as err:
        return False, f"database not answering ({type(err).__name__})"
    return True, "ok"


def make_app(bot: StudioBot) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        body = bot.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok, why = await healthy(bot)
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz)])
    return app


@contextlib.asynccontextmanager
async def serve_metrics(bot: StudioBot, host: str, port: int | None) -> AsyncIterator[int | None]:
    """Serve while the block runs; yields the bound port (None: ``port`` unset, nothing served).

    ``port=0`` picks a free port (tests)."""
    if port is None:
        yield None
        return
    runner = web.AppRunner(make_app(bot), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        log.info("metrics on http://%s:%s/metrics (health: /healthz)", host, bound)
        yield bound
    finally:
        await runner.cleanup()
