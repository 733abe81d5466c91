"""`create_app(settings)`: the FastAPI app behind `harken serve`.

Middleware, outermost first: observe (metrics, audit, access log), CORS (only when origins are
configured), security (API keys, rate limits, upload cap), catch-all (a bug's 500 without
closing the connection). Routes call the one Service. The API docs (/docs, /redoc) are served
with their assets, so they need no network.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from harken import __version__
from harken.config import Settings
from harken.errors import HarkenError
from harken.runtime.memory import trim
from harken.server import chat_routes, jobs_routes, native_routes, openai_routes, realtime_routes, speech_routes
from harken.server.errors import ERROR_RESPONSES, CatchAll, install_error_handlers
from harken.server.media import MediaPolicy
from harken.server.observe import AuditLog, Metrics, ObserveMiddleware
from harken.server.security import KeyRing, RateLimiter, SecurityMiddleware
from harken.server.state import ServerState
from harken.service import Service

__all__ = ["create_app"]

log = logging.getLogger("harken.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.load()
    keys = KeyRing.from_settings(settings)  # a bad keys file fails here, before serving
    metrics = Metrics()
    service = Service(settings, on_batch=metrics.on_batch, model_roots=settings.server.model_roots)
    metrics.watch(service)
    state = ServerState(settings, service, MediaPolicy(settings), metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from harken.batch.jobs import JobManager

        state.jobs = JobManager(service, settings.server.jobs_dir or settings.cache_dir / "jobs", guard=state.media.guard,
                                webhook_hosts=settings.server.webhook_hosts, webhook_secret=settings.server.webhook_secret)
        state.jobs.resume()  # jobs a restart interrupted carry on where they stopped
        service.decoder.start()  # the decoder host imports while the default model loads
        loading = asyncio.create_task(_load_default(state))
        trimming = asyncio.create_task(_trim_memory())
        wyoming = None
        if settings.server.wyoming_port is not None:
            from harken.server.wyoming import WyomingServer

            wyoming = WyomingServer(state, settings.server.host, settings.server.wyoming_port)
            await wyoming.start()
            app.state.wyoming = wyoming
        yield
        loading.cancel()
        trimming.cancel()
        if wyoming is not None:
            await wyoming.stop()  # its connections end; open utterances are dropped
        # uvicorn has stopped taking requests and waited for open ones; jobs pause (they resume
        # on the next start), then queued work finishes.
        await asyncio.to_thread(state.jobs.close)
        await asyncio.to_thread(service.close)

    # /docs and /redoc load Swagger UI, ReDoc and the favicon from fastapi-offline's copies,
    # served here under /static-offline-docs, instead of from public CDNs: they work offline.
    app = FastAPIOffline(
        title="harken",
        version=__version__,
        description="Offline audio understanding: OpenAI-compatible and native routes over local models.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.harken = state
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(realtime_routes.router)
    app.include_router(chat_routes.router)
    app.include_router(speech_routes.router)
    app.include_router(jobs_routes.router)
    app.include_router(native_routes.router)
    server = settings.server
    app.add_middleware(CatchAll)
    app.add_middleware(
        SecurityMiddleware,
        keys=keys,
        limiter=RateLimiter(server.rate_limit_per_minute),
        failures=RateLimiter(server.auth_failures_per_minute),
        max_body_bytes=int(server.max_upload_mb * 1024 * 1024),
    )
    if server.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=server.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(ObserveMiddleware, metrics=metrics, audit=AuditLog(server.audit_log, server.audit_text))
    return app


async def _trim_memory(every_s: float = 30.0) -> None:
    """Hand freed memory back to the system now and then (see runtime/memory.py)."""
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(trim)


async def _load_default(state: ServerState) -> None:
    try:
        await asyncio.to_thread(state.service.load_model, None)
        state.ready = True
    except HarkenError as exc:
        state.load_error = exc.message
        log.error("the default model did not load: %s", exc.message)
