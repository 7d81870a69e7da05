"""A small client for GraphQL tests: the app of an engine, an admin token and ``gql``.

    with graphql_client(engine) as api:
        result = api.gql("{ fairs { totalCount } }")      # as the admin
        api.gql("{ me { id } }", token=None)               # without a token
        api.post(content=b"[...]")                         # the raw HTTP answer

The app is the one ``guanxi serve`` runs (``guanxi.graphql.app.build_app``), driven
in-process through Starlette's TestClient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.testclient import TestClient

from guanxi.engine import Engine, NotFound
from guanxi.graphql.app import build_app
from guanxi.graphql.limits import Limits

ADMIN = "root"
ADMIN_PASSWORD = "correct horse battery"
#: ``token=ADMIN_TOKEN`` (the default) sends the admin's token; ``token=None`` sends none.
ADMIN_TOKEN: Any = object()


def create_admin(engine: Engine, username: str = ADMIN) -> str:
    """A fresh token of the admin ``username``, created (with ADMIN_PASSWORD) if need be."""
    try:
        user_id = engine.auth.user_id(username)
    except NotFound:
        user_id = engine.auth.create_user(username, password=ADMIN_PASSWORD, roles=["admin"]).id
    return engine.auth.issue_token(user_id).token


@dataclass
class GraphQLClient:
    engine: Engine
    client: TestClient
    token: str

    def headers(self, token: Any = ADMIN_TOKEN, headers: dict[str, str] | None = None) -> dict:
        token = self.token if token is ADMIN_TOKEN else token
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return {**auth, **(headers or {})}

    def post(
        self, token: Any = ADMIN_TOKEN, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """POST /graphql with ``json=`` or ``content=``; the raw response."""
        return self.client.post("/graphql", headers=self.headers(token, headers), **kw)

    def get(
        self,
        params: dict[str, str] | None = None,
        token: Any = ADMIN_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """GET /graphql (``params`` holds query, variables); the raw response."""
        return self.client.get("/graphql", params=params, headers=self.headers(token, headers))

    def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: Any = ADMIN_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one operation over POST and return the decoded JSON answer."""
        body: dict[str, Any] = {"query": query}
        if variables:
            body["variables"] = variables
        return self.post(json=body, token=token, headers=headers).json()


@contextmanager
def graphql_client(engine: Engine, limits: Limits | None = None) -> Iterator[GraphQLClient]:
    """A client of ``build_app(engine, limits)`` with an admin token (default limits)."""
    token = create_admin(engine)
    with TestClient(build_app(engine, limits or Limits())) as client:
        yield GraphQLClient(engine, client, token)


def code(result: dict[str, Any]) -> str | None:
    """``errors[0].extensions.code`` of an answer (None when it has no errors)."""
    errors = result.get("errors") or []
    return errors[0].get("extensions", {}).get("code") if errors else None
