"""The ``guanxi`` command line.

Engine commands live here; plugins add theirs through the ``register_commands`` hook
(the GraphQL layer adds ``serve``). Errors are one clear line and a non-zero exit.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import Config
from .engine import Engine
from .errors import GuanxiError
from .plugins import load_plugins


def make_engine(**kwargs: Any) -> Engine:
    """An Engine from the environment; a configuration error becomes a one-line exit."""
    try:
        return Engine(Config.from_env(), **kwargs)
    except GuanxiError as exc:
        raise click.ClickException(str(exc)) from exc


class GuanxiGroup(click.Group):
    """Turns every guanxi error raised by a command into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GuanxiError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=GuanxiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="guanxi")
def cli() -> None:
    """guanxi (关系): a CRM built as a plugin-based workflow engine with one GraphQL API.

    Configuration comes from the environment: GUANXI_HOME (admin folder, default the
    current directory), GUANXI_DATABASE_URL (default sqlite:///guanxi.db in GUANXI_HOME),
    GUANXI_PLUGINS (comma-separated business plugins to load; default all),
    GUANXI_TIMEZONE and GUANXI_CURRENCY.
    """


@cli.command()
def init() -> None:
    """Create the admin folders and the database, applying pending migrations."""
    config = Config.from_env()
    for folder in ("entities", "workflows"):
        (config.home / folder).mkdir(parents=True, exist_ok=True)
    engine = make_engine()
    try:
        plan = engine.open(migrate=True)
    finally:
        engine.close()
    click.echo(f"guanxi home: {config.home}")
    click.echo(f"database:    {engine.url.display()}")
    _print_plan(plan, applied=True)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list the changes; change nothing.")
def migrate(dry_run: bool) -> None:
    """Bring the database schema up to date with the entity descriptions.

    Only additive changes are made (new entity, new optional or defaulted field, new
    index, longer text, required to optional); anything else is refused and listed.
    """
    engine = make_engine()
    try:
        if dry_run:
            plan = engine.pending_migration()
            if plan.refused:
                raise click.ClickException(
                    "these differences would be refused:\n  " + "\n  ".join(plan.refused)
                )
        else:
            plan = engine.open(migrate=True)
    finally:
        engine.close()
    _print_plan(plan, applied=not dry_run)


def _print_plan(plan: Any, *, applied: bool) -> None:
    if not plan.changes:
        click.echo("schema: up to date")
    else:
        verb = "applied" if applied else "pending"
        click.echo(f"schema: {len(plan.changes)} change(s) {verb}")
        for change in plan.changes:
            click.echo(f"  {change.description}")
    for entity in plan.retained:
        click.echo(f"  kept table of {entity} (no loaded plugin declares it)")


@cli.command("plugins")
def plugins_command() -> None:
    """List the loaded plugins, their versions and what each contributes."""
    engine = make_engine()
    table = Table("plugin", "version", "kind", "needs", "entities", "hooks")
    for info in engine.plugins:
        entities = [s.name for s in engine.registry if s.origin == f"plugin {info.name}"]
        table.add_row(
            info.name,
            info.version,
            "core" if info.core else "business",
            ", ".join(info.requires) or "-",
            ", ".join(entities) or "-",
            ", ".join(info.hooks) or "-",
        )
    Console().print(table)


@cli.command("entities")
@click.argument("name", required=False)
@click.option("--lang", default="en", show_default=True, help="Label language (en, zh).")
def entities_command(name: str | None, lang: str) -> None:
    """List the entities, or the fields of entity NAME, with their labels."""
    engine = make_engine()
    console = Console()
    if name is None:
        table = Table("entity", "label", "plural", "fields", "declared by")
        for spec in engine.registry:
            table.add_row(
                spec.name, spec.label_in(lang), spec.plural, str(len(spec.fields)), spec.origin
            )
        console.print(table)
        return
    spec = engine.registry.get(name)
    if spec is None:
        raise click.ClickException(
            f"there is no entity {name!r}; known: {', '.join(engine.registry.names())}"
        )
    console.print(f"[bold]{spec.name}[/bold] ({spec.label_in(lang)}), declared by {spec.origin}")
    table = Table("field", "type", "label", "options", "declared by")
    for f in spec:
        options = [opt for opt in ("required", "unique", "indexed", "readonly") if getattr(f, opt)]
        if f.type == "ref":
            options.append(f"-> {f.to}")
        if f.choices:
            options.append("choices: " + ", ".join(f.choice_values()))
        if f.max_length:
            options.append(f"max {f.max_length}")
        if f.internal:
            continue
        table.add_row(f.name, f.type, f.label_in(lang), "; ".join(options), f.origin)
    console.print(table)
    if spec.reverses:
        console.print(
            "reverse: "
            + ", ".join(f"{r.name} ({r.source}.{r.field})" for r in spec.reverses.values())
        )


@cli.command()
@click.option(
    "--size",
    type=click.Choice(["small", "large"]),
    default="small",
    show_default=True,
    help="small: a believable company to click through; large: volume for benchmarks.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same data.")
def demo(size: str, seed: int) -> None:
    """Fill the database with demo data contributed by the plugins.

    Rows a contribution returns (such as the sign-in details of the people it created)
    are printed once, as a table, at the end.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    engine = make_engine()
    if not len(engine.demo_data):
        raise click.ClickException("no loaded plugin contributes demo data")
    shown: list[tuple[Any, list[dict[str, Any]]]] = []
    try:
        engine.open(migrate=True)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as bar:
            for item in engine.demo_data:
                task = bar.add_task(f"{item.name} ({item.origin})", total=None)

                def progress(done: int, total: int | None = None, task: Any = task) -> None:
                    bar.update(task, completed=done, total=total)

                rows = item.value(engine, size, seed, progress)
                if rows:
                    shown.append((item, list(rows)))
    finally:
        engine.close()
        # what was written is shown even when a later contribution failed
        for item, rows in shown:
            table = Table(*rows[0], title=f"{item.name} ({item.origin}): shown once, note it down")
            for row in rows:
                table.add_row(*("-" if value is None else str(value) for value in row.values()))
            Console().print(table)


@cli.command()
@click.option("--once", is_flag=True, help="Do one pass (due timers, jobs, outbox) and exit.")
@click.option(
    "--poll",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds to wait when there is nothing to do.",
)
def worker(once: bool, poll: float) -> None:
    """Fire due workflow timers, run periodic jobs and deliver outbox messages.

    Run as many as you like against PostgreSQL: work is claimed so nothing runs twice.
    Refuses to start while database migrations are pending.
    """
    from .worker import run_worker

    engine = make_engine()
    engine.open()

    def report(result: Any) -> None:
        if result.busy or once:
            click.echo(
                f"timers fired: {result.timers}, jobs run: {result.jobs}, "
                f"messages delivered: {result.delivered}, failed: {result.failed}"
            )

    try:
        run_worker(engine, poll_seconds=poll, once=once, on_pass=report)
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()


from .workflow_cli import workflow  # noqa: E402 - it imports make_engine from here

cli.add_command(workflow)

from .user_cli import token, user  # noqa: E402 - it imports make_engine from here

cli.add_command(user)
cli.add_command(token)

from .transfer_cli import audit_command, export_command, import_command  # noqa: E402

cli.add_command(import_command)
cli.add_command(export_command)
cli.add_command(audit_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``guanxi`` console script."""
    try:
        pm, _ = load_plugins(Config.from_env())
    except GuanxiError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    pm.hook.register_commands(cli=cli)
    cli.main(args=argv, prog_name="guanxi")
