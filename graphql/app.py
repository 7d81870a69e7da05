"""The ASGI application: Starlette routes around the engine.

``create_app`` is the factory ``guanxi serve`` hands to uvicorn (each worker process
builds its own Engine from the environment); ``build_app`` wraps an existing engine.
"""

from __future__ import annotations

import os
import threading
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from guanxi.engine import Engine
from guanxi.engine.worker import run_worker


def build_app(engine: Engine) -> Starlette:
    """The application for an open engine."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/healthz", healthz)])


SERVE_WORKER_ENV = "GUANXI_SERVE_WORKER"


def create_app() -> Any:
    """Build an Engine from the environment, open it (refusing pending migrations).

    With ``GUANXI_SERVE_WORKER=1`` (``guanxi serve --worker``) the worker loop runs in a
    thread of this process for as long as the app runs.
    """
    engine = Engine()
    engine.open()

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        stop = threading.Event()
        thread = None
        if os.environ.get(SERVE_WORKER_ENV) == "1":
            thread = threading.Thread(
                target=run_worker,
                args=(engine,),
                kwargs={"stop": stop},
                daemon=True,
                name="guanxi-worker",
            )
            thread.start()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=10)
        engine.close()

    # Through the hook, not build_app directly: the first plugin answering asgi_app wins.
    app = engine.hook.asgi_app(engine=engine)
    app.router.lifespan_context = lifespan
    return app
