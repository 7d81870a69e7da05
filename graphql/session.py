"""Signing in and out: ``login``, ``logout``, ``me`` and ``setPassword``."""

from __future__ import annotations

import datetime
from typing import Any, Optional

import strawberry

from .context import Context, call_engine, in_thread


def login_field(user_type: type) -> Any:
    session = strawberry.type(
        type(
            "Session",
            (),
            {
                "__annotations__": {
                    "token": str,
                    "expires_at": datetime.datetime,
                    "user": user_type,
                }
            },
        ),
        description="A signed-in session: send the token as `Authorization: Bearer <token>`.",
    )

    async def login(info: strawberry.Info, username: str, password: str) -> Any:
        ctx: Context = info.context
        request = ctx.request
        address = request.client.host if request is not None and request.client else "unknown"
        found = await call_engine(
            lambda: ctx.engine.auth.login(username, password, address=address)
        )
        return session(token=found.token, expires_at=found.expires_at, user=found.user)

    login.__annotations__ = {
        "info": strawberry.Info,
        "username": str,
        "password": str,
        "return": session,
    }
    return strawberry.field(resolver=login, description="Sign in with a user name and password.")


def logout_field() -> Any:
    async def logout(info: strawberry.Info) -> bool:
        ctx: Context = info.context
        ctx.require_actor()
        token = ctx.token
        return bool(token) and await call_engine(lambda: ctx.engine.auth.logout(token))

    return strawberry.field(resolver=logout, description="End this token's session.")


def set_password_field() -> Any:
    async def set_password(
        info: strawberry.Info,
        user_id: strawberry.ID,
        password: str,
        current_password: Optional[str] = None,  # noqa: UP045
    ) -> bool:
        ctx: Context = info.context
        actor = ctx.require_actor()
        await call_engine(
            lambda: ctx.engine.auth.set_password(
                user_id, password, actor=actor, current_password=current_password
            )
        )
        return True

    return strawberry.field(
        resolver=set_password,
        description="Set a user's password: your own with currentPassword, anyone's as an "
        "admin. Every token of that user stops working, the one of this request included.",
    )


def current_user(user_type: type) -> Any:
    async def me(info: strawberry.Info) -> Any:
        ctx: Context = info.context
        actor = ctx.require_actor()
        if actor.id is None:
            return None
        return await in_thread(lambda: ctx.engine.records.get("User", actor.id, actor=actor))

    me.__annotations__ = {"info": strawberry.Info, "return": Optional[user_type]}  # noqa: UP045
    return me
