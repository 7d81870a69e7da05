"""The ASGI application: Starlette routes around the engine.

``create_app`` is the factory ``guanxi serve`` hands to uvicorn (each worker process
builds its own Engine from the environment); ``build_app`` wraps an existing engine.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from guanxi.engine import Engine


def build_app(engine: Engine) -> Starlette:
    """The application for an open engine."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/healthz", healthz)])


def create_app() -> Any:
    """Build an Engine from the environment, open it (refusing pending migrations)."""
    engine = Engine()
    engine.open()

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        yield
        engine.close()

    # Through the hook, not build_app directly: the first plugin answering asgi_app wins.
    app = engine.hook.asgi_app(engine=engine)
    app.router.lifespan_context = lifespan
    return app
