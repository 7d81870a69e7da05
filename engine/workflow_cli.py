"""``guanxi workflow``: check workflow files, list the loaded workflows, draw one.

The commands build an Engine from the environment (entities, roles, actions and
conditions decide what a file may name). A test may hand one in as the click context
object instead: ``CliRunner().invoke(cli, [...], obj=engine)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .engine import Engine
from .errors import ConfigError
from .workflow_defs import read_workflow, to_dot, to_mermaid


def _engine(ctx: click.Context) -> Engine:
    """The Engine handed in as the context object, or one built from the environment."""
    engine = ctx.find_object(Engine)
    if engine is not None:
        return engine
    from .cli import make_engine  # the CLI module imports this one

    return make_engine()


@click.group()
def workflow() -> None:
    """Check, list and draw workflows (YAML processes bound to an entity's state field)."""


@workflow.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def check(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check workflow FILES against the installation's entities, roles and actions.

    Prints every problem as ``file:line: message`` and exits 1, or one summary line per
    workflow and exits 0. The installation itself must load: a broken installed workflow
    or roles file is reported the same way.
    """
    try:
        engine = _engine(ctx)
    except click.ClickException as exc:
        cause = exc.__cause__
        if not isinstance(cause, ConfigError):
            raise
        for problem in cause.problems:
            click.echo(str(problem))
        click.echo("the installation does not load, so no file was checked", err=True)
        sys.exit(1)
    found = []
    count = 0
    for path in files:
        definition, problems = read_workflow(path, engine)
        for problem in problems:
            click.echo(str(problem))
        count += len(problems)
        if definition is not None:
            found.append(definition)
    if count:
        click.echo(f"{count} problem(s) in {len(files)} file(s)", err=True)
        sys.exit(1)
    for wf in found:
        click.echo(
            f"{wf.source}: ok: workflow {wf.name} on {wf.entity}.{wf.field}, "
            f"{len(wf.states)} states, {len(wf.transitions)} transitions"
        )


@workflow.command("list")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """List the loaded workflows: binding, origin, file, version and states."""
    engine = _engine(ctx)
    if not engine.workflows:
        click.echo("no workflows are loaded")
    for wf in engine.workflows.values():
        click.echo(f"{wf.name}: {wf.entity}.{wf.field}, {wf.origin}, version {wf.version}")
        click.echo(f"  file:   {wf.source}")
        states = [
            s.name
            + (" (initial)" if s.name == wf.initial else "")
            + (" (final)" if s.final else "")
            for s in wf.states.values()
        ]
        click.echo(f"  states: {', '.join(states)}")
    for notice in engine.workflow_notices:
        click.echo(f"note: {notice}")


@workflow.command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="mermaid stateDiagram-v2 or graphviz dot.",
)
@click.pass_context
def graph(ctx: click.Context, name: str, fmt: str) -> None:
    """Print the state diagram of the loaded workflow NAME."""
    engine = _engine(ctx)
    wf = engine.workflows.get(name)
    if wf is None:
        known = ", ".join(sorted(engine.workflows)) or "none"
        raise click.ClickException(f"there is no loaded workflow {name!r} (loaded: {known})")
    click.echo(to_mermaid(wf) if fmt == "mermaid" else to_dot(wf), nl=False)
