"""``guanxi serve``: run the API with uvicorn."""

from __future__ import annotations

import os

import click

from guanxi.engine import Engine, GuanxiError

from .app import SERVE_WORKER_ENV


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (use PostgreSQL for more than one).",
)
@click.option(
    "--worker",
    "with_worker",
    is_flag=True,
    help="Also fire timers, run periodic jobs and deliver messages in this server.",
)
def serve(host: str, port: int, workers: int, with_worker: bool) -> None:
    """Serve the GraphQL API over HTTP.

    Refuses to start while database migrations are pending; run `guanxi migrate` first.
    A new, empty database is created on the spot.
    """
    import uvicorn

    # Check once in this process so a refusal is one clear line, not a worker traceback.
    engine = Engine()
    try:
        engine.open()
    except GuanxiError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.close()
    click.echo(f"guanxi serving {engine.url.display()} on http://{host}:{port}")
    if with_worker:
        os.environ[SERVE_WORKER_ENV] = "1"
    uvicorn.run(
        "guanxi.graphql.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@click.command("schema")
def schema_command() -> None:
    """Print the GraphQL schema as SDL (for frontend code generation)."""
    from .schema import build_schema

    engine = Engine()
    try:
        engine.open()
        click.echo(str(build_schema(engine)))
    except GuanxiError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.close()
