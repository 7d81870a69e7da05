"""``guanxi import``, ``guanxi export`` and ``guanxi audit``: spreadsheets in and out, and
the audit log that records every export (see importer.py, exporter.py).

Each command opens the installation's database (refusing, like ``serve``, while
migrations are pending), works as the system - or as ``--as USER``, whose permissions then
apply - and closes it again. Progress goes to standard error, results to standard output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .actor import SYSTEM, Actor
from .engine import Engine
from .exporter import LABEL_LANGUAGES, export_file
from .importer import ON_DUPLICATE, ImportResult, import_file, write_report
from .user_cli import open_engine

#: Row problems printed on the terminal; the report file has all of them.
SHOWN_PROBLEMS = 20


def _actor(engine: Engine, username: str | None) -> Actor:
    """The system, or the live user ``username`` with their roles and team."""
    if username is None:
        return SYSTEM
    return engine.auth.actor_for(engine.auth.user_id(username))


class RowsPerSecond(ProgressColumn):
    """The task's speed in rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    """A progress bar on standard error, shown from the first rows on (a file refused as
    a whole shows none); yields ``update(done, total)``."""
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecond(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task(description, total=None, start=False)

    def update(done: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
            bar.start_task(task)
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


@click.command("import")
@click.argument("entity")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--as",
    "as_user",
    metavar="USER",
    help="Import as this user: their permissions apply and the records are theirs. "
    "Default: the system (records without an owner go to the shared pool).",
)
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option(
    "--on-duplicate",
    type=click.Choice(ON_DUPLICATE),
    default="error",
    show_default=True,
    help="A row duplicating a live record (natural key or duplicate keys) or an earlier "
    "row: report it as a problem, skip it, or update the record it matches.",
)
@click.option(
    "--skip-errors",
    is_flag=True,
    help="Write the good rows and leave out those with problems (default: any problem "
    "and nothing is written).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every problem to this CSV file: row, column, value, message.",
)
def import_command(
    entity: str,
    file: Path,
    as_user: str | None,
    dry_run: bool,
    on_duplicate: str,
    skip_errors: bool,
    report: Path | None,
) -> None:
    """Import the rows of FILE (.csv or .xlsx) as ENTITY records.

    Row 1 names the columns: field names or labels (名称 or name). Refs take the
    target's natural key or id, money 12.50 or 12.50 EUR, dates 2027-03-01 or 2027/3/1.
    Row numbers in problems are the spreadsheet's (the header is row 1).
    """
    with open_engine() as engine:
        actor = _actor(engine, as_user)
        with _progress(f"import {file.name}") as update:
            result = import_file(
                engine,
                entity,
                file,
                actor=actor,
                dry_run=dry_run,
                on_duplicate=on_duplicate,
                skip_errors=skip_errors,
                progress=update,
            )
    if report is not None:
        write_report(result, report)
    _print_import(result, file, report)
    if result.errors and not result.written:
        raise click.exceptions.Exit(1)


def _print_import(result: ImportResult, file: Path, report: Path | None) -> None:
    for note in result.ignored_columns:
        click.echo(f"ignored {note}")
    errors = result.errors
    for p in errors[:SHOWN_PROBLEMS]:
        where = f"row {p.row}" + (f", {p.column}" if p.column else "")
        value = f" ({p.value!r})" if p.value not in (None, "") else ""
        click.echo(f"{where}{value}: {p.message}", err=True)
    if len(errors) > SHOWN_PROBLEMS:
        more = f"see {report}" if report else "write them all with --report FILE"
        click.echo(f"... and {len(errors) - SHOWN_PROBLEMS} more: {more}", err=True)
    verb = "written" if result.written else "would be written"
    click.echo(
        f"{file.name}: {result.rows:,} rows read; {verb}: {result.created:,} created, "
        f"{result.updated:,} updated; {result.skipped:,} duplicates skipped; "
        f"{result.failed:,} with problems"
    )
    if result.dry_run:
        click.echo("dry run: nothing was written")
    elif not result.written:
        click.echo(
            f"nothing was written: {result.failed:,} row(s) have problems; fix them, or "
            "repeat with --skip-errors to write the others"
        )


@click.command("export")
@click.argument("entity")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write: .csv (UTF-8, opens in Excel) or .xlsx.",
)
@click.option(
    "--filter",
    "filter_json",
    metavar="JSON",
    help='Which records, in the engine\'s filter format: \'{"region": {"eq": "华东"}}\'.',
)
@click.option("--fields", metavar="A,B", help="The fields to write, in this order.")
@click.option("--as", "as_user", metavar="USER", help="Export as this user (their scopes).")
@click.option(
    "--labels",
    type=click.Choice(LABEL_LANGUAGES),
    help="Head the columns (and write enum values) with labels in this language.",
)
def export_command(
    entity: str,
    output: Path,
    filter_json: str | None,
    fields: str | None,
    as_user: str | None,
    labels: str | None,
) -> None:
    """Export ENTITY records to a spreadsheet. Every export is audited."""
    flt = None
    if filter_json is not None:
        try:
            flt = json.loads(filter_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--filter") from None
        if not isinstance(flt, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--filter")
    names = [n for n in fields.split(",")] if fields else None
    with open_engine() as engine:
        actor = _actor(engine, as_user)
        with _progress(f"export {entity}") as update:
            count = export_file(
                engine,
                entity,
                output,
                actor=actor,
                filter=flt,
                fields=names,
                labels=labels,
                progress=update,
            )
    click.echo(f"exported {count:,} {entity} record(s) to {output}")


@click.command("audit")
@click.option("--entity", help="Only events of this entity.")
@click.option(
    "--action",
    "actions",
    multiple=True,
    help="Only these actions (repeatable): create, update, delete, restore, export, "
    "export_refused, member_add, member_remove.",
)
@click.option("--user", "username", help="Only events caused by this user.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def audit_command(
    entity: str | None, actions: tuple[str, ...], username: str | None, limit: int
) -> None:
    """List audit events, newest first (exports and refused exports included)."""
    with open_engine() as engine:
        actor_id = engine.auth.user_id(username) if username else None
        events = engine.records.audit_log(
            entity=entity, actions=actions or None, actor_id=actor_id, limit=limit
        )
    table = Table("at (UTC)", "who", "action", "entity", "record", "details")
    for e in events:
        details = _details(e["action"], e["changes"])
        table.add_row(
            f"{e['at']:%Y-%m-%d %H:%M:%S}",
            e["actor"],
            e["action"],
            e["entity"],
            str(e["record_id"]) if e["record_id"] else "-",
            details if len(details) <= 160 else details[:157] + "...",
        )
    Console().print(table)


def _details(action: str, changes: dict[str, Any]) -> str:
    """An audit event's changes in a line: an export's count, format and filter first."""

    def text(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    if action == "export":
        columns = len(changes.get("fields") or [])
        return (
            f"{changes.get('rows')} record(s), {changes.get('format')}, "
            f"filter {text(changes.get('filter'))}, {columns} column(s)"
        )
    if action == "export_refused":
        return f"{changes.get('reason')} (filter {text(changes.get('filter'))})"
    return text(changes)
