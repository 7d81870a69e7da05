"""The GraphQL layer as an always-loaded core plugin.

It contributes the ASGI application and the ``serve`` command through hooks, so the
engine never imports it. (The folder has no ``__init__.py`` at its top on purpose: see
docs and design - it must never shadow graphql-core.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guanxi.engine import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import click

    from guanxi.engine import Engine

name = "graphql"
core = True


@hookimpl
def asgi_app(engine: Engine) -> Any:
    from .app import build_app

    return build_app(engine)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .serve import schema_command, serve

    cli.add_command(serve)
    cli.add_command(schema_command)
