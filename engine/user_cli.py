"""``guanxi user add|list`` and ``guanxi token``: users and API tokens from the shell.

Each command opens the installation's database (refusing, like ``serve``, while
migrations are pending) and closes it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from .auth import MAX_TOKEN_DAYS, TOKEN_DAYS
from .engine import Engine
from .records import Record, Records


@contextmanager
def open_engine() -> Iterator[Engine]:
    """The engine of this environment, opened (not migrated) and closed afterwards."""
    from .cli import make_engine  # the CLI module imports this one

    engine = make_engine()
    try:
        engine.open()
        yield engine
    finally:
        engine.close()


@click.group()
def user() -> None:
    """Add and list users (admins manage the rest through the API)."""


@user.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="A role of the user (repeatable).")
@click.option("--team", help="The name of the user's team (it must exist).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input. "
    "Without it the user has no password and can only use tokens.",
)
@click.option("--display-name", help="The name shown to people.")
@click.option("--email", help="The user's e-mail address.")
def add(
    name: str,
    roles: tuple[str, ...],
    team: str | None,
    password_stdin: bool,
    display_name: str | None,
    email: str | None,
) -> None:
    """Add user NAME."""
    password = None
    if password_stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("--password-stdin: standard input has no password")
    with open_engine() as engine:
        record = engine.auth.create_user(
            name,
            password=password,
            roles=roles,
            team=team,
            display_name=display_name,
            email=email,
        )
    how = "a password" if password else "no password (tokens only)"
    click.echo(
        f"added user {record.username} (#{record.id}) with roles "
        f"{', '.join(record.roles) or 'none'}, team {team or 'none'} and {how}"
    )


@user.command("list")
def list_users() -> None:
    """List the users: name, display name, roles, team, active."""
    with open_engine() as engine:
        records = engine.records
        teams = {t.id: t.name for t in _all(records, "Team")}
        users = _all(records, "User")
    table = Table("username", "display name", "roles", "team", "active")
    for u in sorted(users, key=lambda u: u.username):
        table.add_row(
            u.username,
            u.display_name or "",
            ", ".join(u.roles or ()),
            teams.get(u.team, "") if u.team is not None else "",
            "yes" if u.active else "no",
        )
    Console().print(table)


def _all(records: Records, entity: str) -> list[Record]:
    """Every live record of ``entity``, page after page."""
    found: list[Record] = []
    after = None
    while True:
        page = records.list(entity, first=records.engine.config.page_size_max, after=after)
        found.extend(page.records)
        if not page.has_next_page:
            return found
        after = page.end_cursor


@click.command("token")
@click.argument("name")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_TOKEN_DAYS),
    default=TOKEN_DAYS,
    show_default=True,
    help="How long the token is valid.",
)
def token(name: str, days: int) -> None:
    """Print a new API token for user NAME (the token alone on the last line)."""
    with open_engine() as engine:
        issued = engine.auth.issue_token(engine.auth.user_id(name), days=days, label="guanxi token")
    click.echo(f"token for {name}, valid until {issued.expires_at:%Y-%m-%d %H:%M} UTC:")
    click.echo(issued.token)
