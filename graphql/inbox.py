"""The in-app inbox: where ``notify`` delivers (``notifications``, ``unreadCount``,
``markNotificationsRead``)."""

from __future__ import annotations

import base64
import datetime
from typing import Any, Optional

import strawberry
from strawberry.scalars import JSON

from guanxi.engine import LimitExceeded

from .context import Context, call_engine, in_thread
from .types import PageInfo


@strawberry.type
class Notification:
    id: strawberry.ID
    template: str
    payload: Optional[JSON]  # noqa: UP045
    created_at: datetime.datetime
    read_at: Optional[datetime.datetime]  # noqa: UP045


@strawberry.type
class NotificationConnection:
    total_count: int
    page_info: PageInfo
    nodes: list[Notification]


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"n:{position}".encode()).decode()


def _position(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        kind, value = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if kind == "n" and int(value) >= 0:
            return int(value) + 1
    except (ValueError, UnicodeDecodeError):
        pass
    raise LimitExceeded("after is not a cursor of this list")


def inbox_fields() -> dict[str, Any]:
    async def notifications(
        info: strawberry.Info,
        unread: Optional[bool] = None,  # noqa: UP045
        first: Optional[int] = 20,  # noqa: UP045
        after: Optional[str] = None,  # noqa: UP045
    ) -> NotificationConnection:
        """Your notifications, newest first."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        size = first if first is not None else 20
        if size < 0 or size > ctx.engine.config.page_size_max:
            raise LimitExceeded(f"first must be between 0 and {ctx.engine.config.page_size_max}")
        start = _position(after)

        def load() -> tuple[int, list[Notification]]:
            inbox = ctx.engine.classes["GxNotification"]
            query = inbox.select().filter("lambda n: n.user_id == uid", {}, {"uid": actor.id})
            if unread:
                query = query.filter("lambda n: n.read_at is None", {}, {})
            total = query.count()
            rows = query.order_by(
                "lambda n: (desc(n.created_at), desc(n.id))", ctx.engine.records._globals(), {}
            )[start : start + size]
            return total, [
                Notification(
                    id=strawberry.ID(str(n.id)),
                    template=n.template,
                    payload=n.payload,
                    created_at=n.created_at,
                    read_at=n.read_at,
                )
                for n in rows
            ]

        total, nodes = await in_thread(load)
        end = start + len(nodes) - 1
        return NotificationConnection(
            total_count=total,
            page_info=PageInfo(
                has_next_page=end + 1 < total, end_cursor=_cursor(end) if nodes else None
            ),
            nodes=nodes,
        )

    async def unread_count(info: strawberry.Info) -> int:
        """How many of your notifications are unread."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        inbox = ctx.engine.classes["GxNotification"]
        return await in_thread(
            lambda: (
                inbox.select()
                .filter("lambda n: n.user_id == uid and n.read_at is None", {}, {"uid": actor.id})
                .count()
            )
        )

    async def mark_notifications_read(info: strawberry.Info, ids: list[strawberry.ID]) -> int:
        """Mark your notifications read; returns how many changed."""
        ctx: Context = info.context
        actor = ctx.require_actor()
        wanted = [int(i) for i in ids if str(i).isdigit()]

        def mark() -> int:
            with ctx.engine.records.transaction(write=True):
                inbox = ctx.engine.classes["GxNotification"]
                rows = inbox.select().filter(
                    "lambda n: n.user_id == uid and n.id in ids and n.read_at is None",
                    {},
                    {"uid": actor.id, "ids": wanted},
                )
                count = 0
                for row in rows:
                    row.read_at = ctx.engine.now()
                    count += 1
                return count

        return await call_engine(mark)

    return {
        "notifications": strawberry.field(resolver=notifications),
        "unread_count": strawberry.field(resolver=unread_count),
        "mark_notifications_read": strawberry.field(resolver=mark_notifications_read),
    }
