"""The ASGI app comes from the GraphQL core plugin through the asgi_app hook."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_asgi_app_hook_serves_healthz(make_engine):
    engine = make_engine(use_entry_points=True)
    app = engine.hook.asgi_app(engine=engine)
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
