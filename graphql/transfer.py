"""Spreadsheets over the API: ``importRecords`` and ``exportRecords``.

``importRecords`` takes the file as a GraphQL multipart upload (the ``operations`` /
``map`` form of the GraphQL multipart request spec) and runs engine/importer.py as the
caller: the answer counts what was (or would be) written and lists the row problems. A
multipart request is as large as the request body limit (``GUANXI_MAX_BODY_BYTES``)
allows; larger files go through ``guanxi import``. Accepting ``multipart/form-data`` does
not open the API to cross-site form posts: every operation needs the ``Authorization``
header, which a form on another site cannot send.

``exportRecords`` checks the export (entity, fields, filter, the caller's export
permission - a refusal is audited) and answers a download URL, ``/exports/<token>``,
valid for :data:`LINK_MINUTES` minutes. The token carries the request and the caller's
user id, signed with the installation's secret (HMAC-SHA256, like list cursors); the app
serves it with :func:`download` without a bearer token (a browser can follow the link),
refusing a tampered or expired token. The export runs when the link is fetched, as the
user - whose permission is checked again - and is audited then, streaming CSV page by page
(an .xlsx is built first, then sent).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import tempfile
from collections.abc import Iterator
from enum import Enum
from typing import Any, Optional
from urllib.parse import quote

import strawberry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from guanxi.engine import Engine, GuanxiError, PermissionDenied
from guanxi.engine.exporter import Export
from guanxi.engine.filters import OPERATORS
from guanxi.engine.importer import import_file
from guanxi.engine.metadata import snake

from .context import Context, call_engine

LINK_MINUTES = 10
ROUTE = "/exports/{token}"
_LOGIC = frozenset({"and", "or", "not", "deleted", "currency"})
_OPERATOR_NAMES = frozenset(op for ops in OPERATORS.values() for op in ops)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@strawberry.enum(description="What an import does with a row that duplicates a record.")
class OnDuplicate(Enum):
    ERROR = "error"
    SKIP = "skip"
    UPDATE = "update"


@strawberry.enum
class ExportFormat(Enum):
    CSV = "csv"
    XLSX = "xlsx"


@strawberry.type(description="One problem of one row of an imported file.")
class ImportProblem:
    row: int = strawberry.field(description="The spreadsheet's row number (header = 1).")
    column: Optional[str] = strawberry.field(  # noqa: UP045
        description="The header cell as written; null for the row as a whole."
    )
    value: Optional[str]  # noqa: UP045
    message: str
    skipped: bool = strawberry.field(
        description="A duplicate left out (onDuplicate: SKIP), not an error."
    )


@strawberry.type(description="What an import did, or would have done.")
class ImportResult:
    entity: str
    rows: int = strawberry.field(description="Data rows read.")
    created: int
    updated: int
    skipped: int
    failed: int = strawberry.field(description="Rows with a problem.")
    written: bool = strawberry.field(description="Whether the records were committed.")
    dry_run: bool
    ignored_columns: list[str]
    problems: list[ImportProblem]


@strawberry.type(description="A short-lived link to download an export.")
class ExportLink:
    url: str
    expires_at: datetime.datetime
    format: ExportFormat
    rows: int = strawberry.field(description="Records the export matches now.")


def graphql_filter(value: Any) -> Any:
    """A filter as a client writes it (camelCase field names) in the engine's format."""
    if isinstance(value, list):
        return [graphql_filter(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = key if key in _OPERATOR_NAMES or key in _LOGIC else snake(key)
        out[name] = graphql_filter(item)
    return out


# -- signed links ---------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(engine: Engine, payload: bytes) -> bytes:
    return hmac.new(engine.secret, b"guanxi-export\x00" + payload, hashlib.sha256).digest()


def sign(engine: Engine, request: dict[str, Any]) -> str:
    payload = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()
    return f"{_b64(payload)}.{_b64(_mac(engine, payload))}"


def verify(engine: Engine, token: str) -> dict[str, Any]:
    """The request a token carries; PermissionDenied when it is tampered with or expired."""
    bad = PermissionDenied("this is not a valid download link; ask for a new one")
    if not _TOKEN.match(token):
        raise bad
    head, mac = token.split(".")
    try:
        payload, given = _unb64(head), _unb64(mac)
    except ValueError:
        raise bad from None
    if not hmac.compare_digest(given, _mac(engine, payload)):
        raise bad
    request = json.loads(payload)
    expires = datetime.datetime.fromisoformat(request["expires"])
    if engine.now() > expires:
        raise PermissionDenied(
            f"this download link expired at {expires:%Y-%m-%d %H:%M} UTC; "
            "ask for a new one (exportRecords)"
        )
    return request


# -- resolvers ------------------------------------------------------------------------------
async def import_records(
    info: strawberry.Info,
    entity: str,
    file: Upload,
    dry_run: bool = False,
    on_duplicate: OnDuplicate = OnDuplicate.ERROR,
    skip_errors: bool = False,
) -> ImportResult:
    """Import a .csv or .xlsx file (a multipart request) as records of `entity`, as the
    caller. Default: any row problem and nothing is written; `skipErrors` writes the good
    rows; `dryRun` writes nothing. Row numbers are the spreadsheet's (header = row 1)."""
    ctx: Context = info.context
    actor = ctx.require_actor()
    engine = ctx.engine
    handle = getattr(file, "file", file)
    name = getattr(file, "filename", None) or "upload"
    result = await call_engine(
        lambda: import_file(
            engine,
            entity,
            handle,
            name=name,
            actor=actor,
            dry_run=dry_run,
            on_duplicate=on_duplicate.value,
            skip_errors=skip_errors,
        )
    )
    return ImportResult(
        entity=result.entity,
        rows=result.rows,
        created=result.created,
        updated=result.updated,
        skipped=result.skipped,
        failed=result.failed,
        written=result.written,
        dry_run=result.dry_run,
        ignored_columns=result.ignored_columns,
        problems=[
            ImportProblem(
                row=p.row, column=p.column, value=p.value, message=p.message, skipped=p.skipped
            )
            for p in result.problems
        ],
    )


async def export_records(
    info: strawberry.Info,
    entity: str,
    filter: Optional[JSON] = None,  # noqa: UP045
    format: ExportFormat = ExportFormat.CSV,
    fields: Optional[list[str]] = None,  # noqa: UP045
    labels: Optional[str] = None,  # noqa: UP045
) -> ExportLink:
    """A link to download the `entity` records matching `filter` (the list filter, as
    JSON) as CSV or XLSX, valid for 10 minutes. Needs the export permission; the export is
    audited when the link is fetched, a refusal at once."""
    ctx: Context = info.context
    actor = ctx.require_actor()
    engine = ctx.engine
    flt = graphql_filter(filter)
    names = [snake(n) for n in fields] if fields else None

    def prepare() -> int:
        export = Export.prepare(
            engine, entity, actor=actor, filter=flt, fields=names, labels=labels, fmt=format.value
        )
        return export.count()

    rows = await call_engine(prepare)
    expires = engine.now().replace(microsecond=0) + datetime.timedelta(minutes=LINK_MINUTES)
    token = sign(
        engine,
        {
            "user": actor.id,
            "entity": entity,
            "filter": flt,
            "fields": names,
            "labels": labels,
            "format": format.value,
            "expires": expires.isoformat(),
        },
    )
    base = str(ctx.request.base_url) if ctx.request is not None else "/"
    return ExportLink(
        url=base.rstrip("/") + ROUTE.format(token=token),
        expires_at=expires,
        format=format,
        rows=rows,
    )


def transfer_fields() -> dict[str, Any]:
    """The mutations this module adds to the schema (see SchemaBuilder._core_fields)."""
    return {
        name: strawberry.field(resolver=resolver, description=_doc(resolver))
        for name, resolver in (
            ("import_records", import_records),
            ("export_records", export_records),
        )
    }


def _doc(resolver: Any) -> str:
    return " ".join((resolver.__doc__ or "").split())


# -- the download route -----------------------------------------------------------------------
def _error(exc: GuanxiError, status: int) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _disposition(entity: str, fmt: str, now: datetime.datetime) -> str:
    name = f"{entity}-{now:%Y%m%d-%H%M%S}.{fmt}"
    return f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"


def download(engine: Engine) -> Any:
    """The ``GET /exports/<token>`` endpoint of ``engine``'s app."""

    async def endpoint(request: Request) -> Response:
        token = request.path_params["token"]

        def prepare() -> Export:
            order = verify(engine, token)
            actor = engine.auth.actor_for(order["user"])
            return Export.prepare(
                engine,
                order["entity"],
                actor=actor,
                filter=order["filter"],
                fields=order["fields"],
                labels=order["labels"],
                fmt=order["format"],
            )

        try:
            export = await call_engine(prepare)
        except GuanxiError as exc:
            status = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "VALIDATION": 400}
            return _error(exc, status.get(exc.code, 400))
        headers = {
            "Content-Disposition": _disposition(export.spec.name, export.format, engine.now()),
            "Cache-Control": "no-store",
        }
        media = MEDIA_TYPES[export.format]
        if export.format == "csv":
            # a sync iterator: Starlette runs each step in a thread; a page opens and closes
            # its own transaction inside one step, so no session spans two threads
            return StreamingResponse(export.csv_chunks(), media_type=media, headers=headers)
        spooled = await call_engine(lambda: _xlsx(export))
        return StreamingResponse(_read(spooled), media_type=media, headers=headers)

    return endpoint


def _xlsx(export: Export) -> Any:
    spooled = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115
    export.write(spooled)
    spooled.seek(0)
    return spooled


def _read(handle: Any) -> Iterator[bytes]:
    try:
        while chunk := handle.read(1 << 16):
            yield chunk
    finally:
        handle.close()
