"""The ASGI application: Starlette routes around the engine.

``create_app`` is the factory ``guanxi serve`` hands to uvicorn (each worker process
builds its own Engine from the environment); ``build_app`` wraps an open engine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Any

from pony.orm import db_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.unset import UNSET

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
)
from guanxi.engine import Engine, GuanxiError
from guanxi.engine.migrations import plan_migration
from guanxi.engine.worker import run_worker

from .context import Context, call_engine
from .limits import Limits
from .schema import build_schema
from .transfer import ROUTE as EXPORT_ROUTE
from .transfer import download

SERVE_WORKER_ENV = "GUANXI_SERVE_WORKER"
OPEN_FIELDS = frozenset({"login", "__typename"})
#: strawberry's reasons for refusing a request, said so a person knows what to send
BAD_REQUESTS = {
    "Unable to parse request body as JSON": "the request is not valid JSON (its body, or "
    'the variables of a GET): send {"query": "...", "variables": {...}}',
    "Unsupported content type": "send the request as JSON, with Content-Type: application/json",
    "No GraphQL query found in the request": 'the request has no "query": send '
    '{"query": "...", "variables": {...}}',
}


class RequireToken(SchemaExtension):
    """Every operation except ``login`` needs a valid token (introspection included)."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context.context
        if isinstance(ctx, Context) and ctx.actor is None:
            document = self.execution_context.graphql_document
            if document is None or _root_fields(document) - OPEN_FIELDS:
                self.execution_context.result = ExecutionResult(
                    data=None,
                    errors=[
                        GraphQLError(
                            "sign in first: send Authorization: Bearer <token>",
                            extensions={"code": "UNAUTHENTICATED"},
                        )
                    ],
                )
        yield


def _root_fields(document: DocumentNode) -> set[str]:
    """The root fields a document asks for, looking through inline fragments and fragment
    spreads (``{ ... on Query { __schema { types { name } } } }`` asks for ``__schema``)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    pending = [
        selection
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        for selection in definition.selection_set.selections
    ]
    names: set[str] = set()
    spread: set[str] = set()
    while pending:
        selection = pending.pop()
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            pending.extend(selection.selection_set.selections)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
            spread.add(selection.name.value)
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                pending.extend(fragment.selection_set.selections)
    return names


def _language(request: Request) -> str:
    header = request.headers.get("accept-language", "")
    return "zh" if header.lower().startswith("zh") else "en"


class GuanxiGraphQL(GraphQL):
    """Strawberry's ASGI view with guanxi's context, body limit and error shapes."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        schema = build_schema(engine, limits, extra_extensions=[RequireToken])
        super().__init__(
            schema,
            graphql_ide="graphiql" if limits.introspection else None,
            allow_queries_via_get=True,
            # file uploads (importRecords); the body limit below applies to them too, and
            # every operation needs the Authorization header, which a cross-site form
            # cannot send
            multipart_uploads_enabled=True,
        )
        self.engine = engine
        self.limits = limits

    async def get_context(self, request: Any, response: Any = None) -> Context:
        token = None
        actor = None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            try:
                actor = await call_engine(lambda: self.engine.auth.authenticate(token))
            except GuanxiError:
                actor = None  # RequireToken answers UNAUTHENTICATED
        return Context(
            engine=self.engine,
            actor=actor,
            language=_language(request),
            request=request,
            token=token,
        )

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context, root_value)
        except Exception as exc:  # strawberry's HTTPException (status_code, reason)
            if isinstance(exc.__cause__, InvalidOperationTypeError):  # a mutation over GET
                response = _error_response(
                    "mutations are not accepted over GET; send them with POST",
                    405,
                    "LIMIT_EXCEEDED",
                )
                response.headers["Allow"] = "POST"
                return response
            if getattr(exc, "status_code", None) == 400:  # a request that is no operation
                return _error_response(_bad_request(exc), 400, "VALIDATION")
            raise

    def decode_json(self, data: str | bytes) -> object:
        """A JSON body (or the ``variables`` of a GET) must be an object; strawberry would
        answer any other JSON value with a server error."""
        value = super().decode_json(data)
        if not isinstance(value, dict | list):  # a list is a batch, refused before this
            raise BadRequest(
                f"expected a JSON object, not {type(value).__name__}: send "
                '{"query": "...", "variables": {...}}'
            )
        return value

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        request = Request(scope, receive)
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_big = f"the request body is larger than {limit} bytes"
        if declared.isdigit() and int(declared) > limit:
            return await _limit_response(too_big, 413)(scope, receive, send)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return await _limit_response(too_big, 413)(scope, receive, send)
        if request.method == "POST" and body.lstrip().startswith(b"["):
            message = "batched requests are not accepted; send one operation per request"
            return await _limit_response(message, 400)(scope, receive, send)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await super().__call__(scope, replay, send)


class BadRequest(Exception):
    """A request strawberry cannot read as an operation (shaped like its HTTPException)."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bad_request(exc: Exception) -> str:
    reason = str(getattr(exc, "reason", "") or exc)
    return BAD_REQUESTS.get(reason, reason)


def _error_response(message: str, status: int, code: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


def _limit_response(message: str, status: int) -> JSONResponse:
    return _error_response(message, status, "LIMIT_EXCEEDED")


def build_app(engine: Engine, limits: Limits | None = None) -> Starlette:
    """The application for an open engine: /graphql, /healthz, /readyz and the export
    downloads /exports/<token>."""
    graphql_app = GuanxiGraphQL(engine, limits or Limits.from_env())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        def check() -> list[str]:
            with db_session:
                plan = plan_migration(engine.db, engine.registry)
            return [c.description for c in plan.changes] + list(plan.refused)

        try:
            pending = await call_engine(check)
        except Exception as exc:  # the database is unreachable: say so, do not crash
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        if pending:
            return JSONResponse(
                {"status": "migrations pending", "changes": pending}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            Route(EXPORT_ROUTE, download(engine), methods=["GET"]),
        ]
    )


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


__all__ = ["build_app", "create_app"]
