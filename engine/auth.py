"""Users, passwords and API tokens: proving who is calling (``engine.auth``).

Passwords are hashed with argon2id. A token is 32 random bytes handed out once; the
database keeps only its SHA-256, so a leaked table opens no account. Failed logins are
counted in the database per user name and per address, so several workers agree on
when to refuse. Nothing is cached between calls, for the same reason.

A user's tokens die when their password, roles, team or ``active`` change and when the
user is deleted: :class:`AuthEvents`, registered by the Engine as an internal plugin,
watches every write of ``User``, whoever makes it.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from .actor import SYSTEM, Actor
from .errors import (
    ConflictError,
    FieldProblem,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationError,
)
from .hookspecs import for_entities, hookimpl
from .records import Record, RecordEvent

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = [
    "Auth",
    "AuthEvents",
    "IssuedToken",
    "Session",
    "default_hasher",
    "hash_token",
    "password_problems",
]

T = TypeVar("T")

USER = "User"
MIN_PASSWORD_LENGTH = 8
#: Longer inputs are refused rather than hashed: a password is not a file upload.
MAX_PASSWORD_LENGTH = 1024
TOKEN_DAYS = 30
MAX_TOKEN_DAYS = 3650
#: Failed logins are counted in windows of this length; reaching a limit locks the key
#: for as long again.
FAILURE_WINDOW = timedelta(minutes=15)
MAX_USER_FAILURES = 5
MAX_ADDRESS_FAILURES = 20
#: ``last_used_at`` is refreshed at most this often, so a request is not always a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: Changing one of these User fields ends all the user's tokens.
TOKEN_ENDING_FIELDS = frozenset({"roles", "team", "active", "password_hash"})
#: The one answer to a failed login, whatever failed: no one learns which users exist.
WRONG_CREDENTIALS = "wrong user name or password"
_KEY_LENGTH = 200  # GxLoginFailure.key


@dataclass(frozen=True)
class IssuedToken:
    """A new API token. ``token`` is shown once: only its SHA-256 is stored."""

    token: str = field(repr=False)
    expires_at: datetime
    user_id: int


@dataclass(frozen=True)
class Session:
    """A successful login: the token, when it expires, and the user (without secrets)."""

    token: str = field(repr=False)
    expires_at: datetime
    user: Record


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def default_hasher() -> PasswordHasher:
    """argon2id with the RFC 9106 low-memory profile (64 MiB, 3 passes, 4 lanes)."""
    return PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)


class Auth:
    """Users, passwords, tokens and login throttling of one Engine.

    ``hasher`` is the argon2 PasswordHasher (argon2id, RFC 9106 low-memory by default);
    a stored hash made with other parameters is rehashed at the next successful login.
    Every time is the engine's clock (naive UTC).
    """

    def __init__(self, engine: Engine, *, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or default_hasher()
        self._dummy: tuple[PasswordHasher, str] | None = None

    # -- users ----------------------------------------------------------------------------
    def create_user(
        self,
        username: str,
        *,
        password: str | None = None,
        roles: Iterable[str] = (),
        team: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        actor: Actor = SYSTEM,
    ) -> Record:
        """Create an active user through the record API (validated and audited).

        Only admins create users. ``roles`` must be loaded roles and ``team`` the name of
        an existing team; a user without ``password`` can only use tokens. The returned
        record never carries ``password_hash``.
        """
        if not actor.is_admin:
            raise PermissionDenied("only admins create users")
        roles = [roles] if isinstance(roles, str) else list(dict.fromkeys(roles))
        problems = self._role_problems(roles)
        if password is not None:
            problems += password_problems(password)
        team_id = None
        if team is not None:
            team_id = self._team_id(team)
            if team_id is None:
                problems.append(FieldProblem(USER, "team", f"there is no team named {team!r}"))
        if problems:
            raise ValidationError(problems)
        values: dict[str, Any] = {
            "username": username,
            "roles": roles,
            "team": team_id,
            "active": True,
            "display_name": display_name,
            "email": email,
        }
        if password is not None:
            values["password_hash"] = self.hasher.hash(password)
        return self._public(self.engine.records.create(USER, values, actor=_acting(actor)))

    def set_password(
        self,
        user_id: int,
        password: str,
        *,
        actor: Actor,
        current_password: str | None = None,
    ) -> None:
        """Set a user's password; all their tokens die with the old one.

        Admins set anyone's password. A user may set their own, giving
        ``current_password`` (a stolen token must not be enough to take an account over);
        wrong current passwords count as failed logins of that user.
        """
        uid = _user_id(user_id)
        own = actor.id is not None and actor.id == uid
        if not actor.is_admin and not own:
            raise PermissionDenied("only admins set another user's password")
        problems = password_problems(password)
        if problems:
            raise ValidationError(problems)
        if not actor.is_admin:
            self._check_current_password(uid, current_password)
        self.engine.records.update(
            USER, uid, {"password_hash": self.hasher.hash(password)}, actor=_acting(actor)
        )

    def _check_current_password(self, uid: int, current_password: str | None) -> None:
        if not current_password:
            raise ValidationError(
                FieldProblem(USER, "current_password", "is needed to change your own password")
            )
        with self.engine.records.transaction():
            user = self._user(uid)
            if user is None:
                raise NotFound(f"User #{uid} does not exist")
            stored, username = user.password_hash, user.username
        keys = (_key("user", username),)
        self._refuse_locked(keys)
        if not self._verify(stored, current_password):
            self._record_failure(keys)
            raise ValidationError(
                FieldProblem(USER, "current_password", "is not your current password")
            )

    def actor_for(self, user_id: int) -> Actor:
        """The Actor of a live, active user (Unauthenticated otherwise)."""
        uid = _user_id(user_id)
        with self.engine.records.transaction():
            return self._actor(uid)

    # -- tokens ---------------------------------------------------------------------------
    def issue_token(
        self,
        user_id: int,
        *,
        days: int = TOKEN_DAYS,
        label: str | None = None,
        actor: Actor = SYSTEM,
    ) -> IssuedToken:
        """A new token for a live, active user, valid ``days`` days.

        Only admins, or the user themself, get one. ``label`` says what it is for.
        """
        uid = _user_id(user_id)
        if not actor.is_admin and actor.id != uid:
            raise PermissionDenied("only admins issue tokens for another user")
        with self.engine.records.transaction(write=True):
            user = self._user(uid)
            if user is None:
                raise NotFound(f"User #{uid} does not exist")
            if not user.active:
                raise ValidationError(
                    FieldProblem(USER, "active", f"user {user.username} is deactivated")
                )
            return self._issue(uid, days, label)

    def _issue(self, uid: int, days: int, label: str | None) -> IssuedToken:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_TOKEN_DAYS:
            raise ValidationError(
                FieldProblem("Token", "days", f"must be a whole number from 1 to {MAX_TOKEN_DAYS}")
            )
        token = secrets.token_urlsafe(32)
        now = self.engine.now()
        expires_at = now + timedelta(days=days)
        self.engine.classes["GxToken"](
            user_id=uid,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=expires_at,
            label=label[:200] if label else None,
        )
        return IssuedToken(token, expires_at, uid)

    def authenticate(self, token: str) -> Actor:
        """The Actor a token stands for; Unauthenticated when it is unknown, expired or
        revoked, or its user is deactivated or deleted."""
        if not isinstance(token, str) or not token:
            raise Unauthenticated("no token was given; send `Authorization: Bearer <token>`")
        now = self.engine.now()
        with self.engine.records.transaction():
            row = self.engine.classes["GxToken"].get(token_hash=hash_token(token))
            if row is None:
                raise Unauthenticated("the token is not valid; log in again")
            if row.revoked_at is not None:
                raise Unauthenticated(
                    "the token was revoked (logout, or a change of the user's password, roles, "
                    "team or status); log in again"
                )
            if row.expires_at <= now:
                raise Unauthenticated(
                    f"the token expired at {row.expires_at:%Y-%m-%d %H:%M} UTC; log in again"
                )
            actor = self._actor(row.user_id)
            token_id = row.id
            stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
        if stale:
            self._touch(token_id, now)
        return actor

    def _touch(self, token_id: int, now: datetime) -> None:
        """Note when a token was last used; bookkeeping that may lose a race."""
        try:
            with self.engine.records.transaction(write=True):
                row = self.engine.classes["GxToken"].get(id=token_id)
                if row is not None:
                    row.last_used_at = now
        except ConflictError:
            pass

    def logout(self, token: str) -> bool:
        """Revoke ``token``; True when it was live (an unknown token is no error)."""
        if not isinstance(token, str) or not token:
            return False
        with self.engine.records.transaction(write=True):
            row = self.engine.classes["GxToken"].get(token_hash=hash_token(token))
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self.engine.now()
            return True

    def revoke_user_tokens(self, user_id: int) -> int:
        """Revoke every live token of a user (inside the caller's transaction, if any);
        returns how many."""
        uid = _user_id(user_id)
        token = self.engine.classes["GxToken"]
        with self.engine.records.transaction(write=True):
            now = self.engine.now()
            rows = token.select(lambda t: t.user_id == uid and t.revoked_at is None)[:]
            for row in rows:
                row.revoked_at = now
            return len(rows)

    # -- login ----------------------------------------------------------------------------
    def login(
        self, username: str, password: str, *, address: str, days: int = TOKEN_DAYS
    ) -> Session:
        """Check a user name and password and open a session (a token valid ``days``).

        A wrong user name and a wrong password get the same Unauthenticated message and
        cost the same argon2 verification. After MAX_USER_FAILURES failures for a user
        name, or MAX_ADDRESS_FAILURES from one ``address``, within FAILURE_WINDOW, every
        attempt is refused with LimitExceeded naming when to retry - even a right one.
        A success clears the user name's count.
        """
        name = username.strip() if isinstance(username, str) else ""
        # NUL cannot reach PostgreSQL; no user has it in their name anyway
        name = name.replace("\x00", "")
        where = str(address or "unknown").strip()
        keys = (_key("user", name), _key("addr", where))
        self._refuse_locked(keys)
        with self.engine.records.transaction():
            user = self._user_named(name)
            stored = user.password_hash if user is not None and user.active else None
            uid = user.id if user is not None else None
        # Verify even when there is no such user (against a dummy hash): same time, same answer.
        if not self._verify(stored, password if isinstance(password, str) else "") or uid is None:
            self._record_failure(keys)
            raise Unauthenticated(WRONG_CREDENTIALS)
        assert stored is not None
        rehashed = self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) else None
        with self.engine.records.transaction(write=True):
            user = self._user(uid)
            if user is None or not user.active or user.password_hash != stored:
                raise Unauthenticated(WRONG_CREDENTIALS)  # changed meanwhile
            if rehashed is not None:
                # Same password, stronger hash: not a password change, so no audit entry
                # and the user's other sessions live on.
                user.password_hash = rehashed
            failures = self.engine.classes["GxLoginFailure"].get(key=keys[0])
            if failures is not None:
                failures.delete()
            issued = self._issue(uid, days, f"login from {where}")
            record = self._public(self.engine.records.get(USER, uid))
        return Session(issued.token, issued.expires_at, record)

    def _verify(self, stored: str | None, password: str) -> bool:
        """Verify ``password``; without a stored hash, verify a dummy one (same cost)."""
        try:
            return self.hasher.verify(stored or self._dummy_hash, password) and bool(stored)
        except (VerificationError, InvalidHashError):
            return False

    @property
    def _dummy_hash(self) -> str:
        """A hash of a random password, made once per hasher (so it costs the same)."""
        if self._dummy is None or self._dummy[0] is not self.hasher:
            self._dummy = (self.hasher, self.hasher.hash(secrets.token_urlsafe(16)))
        return self._dummy[1]

    def _refuse_locked(self, keys: Iterable[str]) -> None:
        now = self.engine.now()
        failures = self.engine.classes["GxLoginFailure"]
        with self.engine.records.transaction():
            for key in keys:
                row = failures.get(key=key)
                if row is not None and row.locked_until is not None and row.locked_until > now:
                    raise _locked(key, row.locked_until, now)

    def _record_failure(self, keys: Iterable[str]) -> None:
        """Count one failed attempt for each key, in the database (every worker sees it)."""
        failures = self.engine.classes["GxLoginFailure"]

        def count() -> None:
            now = self.engine.now()
            for key in keys:
                row = failures.get_for_update(key=key)
                if row is None:
                    row = failures(key=key, count=0, window_start=now)
                elif row.window_start + FAILURE_WINDOW <= now and not (
                    row.locked_until is not None and row.locked_until > now
                ):
                    row.set(count=0, window_start=now, locked_until=None)
                row.count += 1
                if row.count >= _limit(key) and row.locked_until is None:
                    row.locked_until = now + FAILURE_WINDOW

        self._retry_write(count)
        self._forget_old_failures()

    def _forget_old_failures(self) -> None:
        failures = self.engine.classes["GxLoginFailure"]
        now = self.engine.now()
        cutoff = now - FAILURE_WINDOW
        try:
            with self.engine.records.transaction(write=True):
                failures.select(
                    lambda f: (
                        f.window_start < cutoff and (f.locked_until is None or f.locked_until < now)
                    )
                ).delete(bulk=True)
        except ConflictError:
            pass  # another worker is tidying up

    def _retry_write(self, work: Callable[[], T], attempts: int = 3) -> T:
        """Run ``work`` in a write transaction, again when a concurrent insert wins."""
        for attempt in range(attempts):
            try:
                with self.engine.records.transaction(write=True):
                    return work()
            except ConflictError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # -- helpers --------------------------------------------------------------------------
    def _user(self, uid: int) -> Any:
        """The live User object ``uid`` (or None); inside a transaction."""
        user = self.engine.classes[USER].get(id=uid)
        return user if user is not None and user.deleted_at is None else None

    def _user_named(self, name: str) -> Any:
        # Usernames are unique among live users only: a deleted user may share one.
        return (
            self.engine.classes[USER]
            .select(lambda u: u.username == name and u.deleted_at is None)
            .first()
        )

    def user_id(self, username: str) -> int:
        """The id of the live user named ``username``; NotFound otherwise."""
        with self.engine.records.transaction():
            user = self._user_named(username.strip())
            if user is None:
                raise NotFound(f"there is no user named {username!r}")
            return int(user.id)

    def _actor(self, uid: int) -> Actor:
        """The Actor of user ``uid`` (inside a transaction). Roles no longer loaded are
        left out; ``team_ids`` is the user's team and all its sub-teams."""
        user = self.engine.classes[USER].get(id=uid)
        if user is None or user.deleted_at is not None:
            raise Unauthenticated("the user of this token no longer exists")
        if not user.active:
            raise Unauthenticated(f"user {user.username} is deactivated")
        known = self.engine.role_defs
        roles = frozenset(r for r in (user.roles or ()) if isinstance(r, str) and r in known)
        team_id = user.team.id if user.team is not None else None
        return Actor(
            id=int(user.id),
            username=user.username,
            roles=roles,
            team_id=team_id,
            team_ids=self._team_ids(team_id),
        )

    def _team_ids(self, team_id: int | None) -> frozenset[int]:
        if team_id is None:
            return frozenset()
        children: dict[int, list[int]] = defaultdict(list)
        # Teams are few: one query loads them all. Teams in the recycle bin still link
        # their sub-teams, whose records keep their team.
        for team in self.engine.classes["Team"].select():
            if team.parent is not None:
                children[team.parent.id].append(team.id)
        found = {team_id}
        todo = [team_id]
        while todo:
            for child in children[todo.pop()]:
                if child not in found:  # a parent cycle ends here
                    found.add(child)
                    todo.append(child)
        return frozenset(found)

    def _team_id(self, name: str) -> int | None:
        with self.engine.records.transaction():
            team = (
                self.engine.classes["Team"]
                .select(lambda t: t.name == name and t.deleted_at is None)
                .first()
            )
            return int(team.id) if team is not None else None

    def _role_problems(self, roles: list[Any]) -> list[FieldProblem]:
        known = self.engine.role_defs
        unknown = [r for r in roles if not isinstance(r, str) or r not in known]
        if not unknown:
            return []
        return [
            FieldProblem(
                USER,
                "roles",
                f"unknown role(s) {', '.join(map(repr, unknown))}; "
                f"known roles: {', '.join(sorted(known))}",
            )
        ]

    def _public(self, record: Record) -> Record:
        """``record`` without the internal fields (the password hash)."""
        spec = self.engine.registry[USER]
        hidden = {f.name for f in spec if f.internal}
        return Record(USER, {k: v for k, v in record.items() if k not in hidden})


class AuthEvents:
    """Internal plugin: a user's tokens die with a change of their password, roles, team
    or status, and with their deletion, whoever writes it and however."""

    @hookimpl
    @for_entities(USER)
    def before_commit(self, engine: Engine, event: RecordEvent) -> None:
        """A user's roles must be roles this installation knows, however they are written."""
        if event.entity != USER or "roles" not in event.changes and event.action != "create":
            return
        roles = event.values.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationError(FieldProblem(USER, "roles", "must be a list of role names"))
        unknown = sorted(set(roles) - set(engine.role_defs))
        if unknown:
            raise ValidationError(
                FieldProblem(
                    USER,
                    "roles",
                    f"unknown role(s) {', '.join(unknown)}; known: "
                    + ", ".join(sorted(engine.role_defs)),
                )
            )

    @hookimpl
    @for_entities(USER)
    def record_written(self, engine: Engine, event: RecordEvent) -> None:
        if event.entity != USER:
            return
        if event.action == "delete" or (
            event.action == "update" and TOKEN_ENDING_FIELDS & event.changes.keys()
        ):
            engine.auth.revoke_user_tokens(event.record_id)


def password_problems(password: Any) -> list[FieldProblem]:
    """Why ``password`` cannot be used, as problems of the field ``password``."""
    if not isinstance(password, str):
        return [FieldProblem(USER, "password", "must be text")]
    if len(password) < MIN_PASSWORD_LENGTH:
        return [
            FieldProblem(USER, "password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
        ]
    if len(password) > MAX_PASSWORD_LENGTH:
        return [FieldProblem(USER, "password", f"must be at most {MAX_PASSWORD_LENGTH} characters")]
    return []


def _acting(actor: Actor) -> Actor:
    """``actor`` allowed to write internal fields (the engine writes the password hash on
    their behalf, after its own checks); the audit still names them."""
    return actor if actor.is_system else replace(actor, is_system=True)


def _user_id(user_id: Any) -> int:
    try:
        return int(user_id)
    except (TypeError, ValueError):
        raise NotFound(f"User {user_id!r} does not exist") from None


def _key(kind: str, value: str) -> str:
    key = f"{kind}:{value}"
    if len(key) > _KEY_LENGTH:
        key = f"{kind}#sha256:{hashlib.sha256(value.encode('utf-8')).hexdigest()}"
    return key


def _limit(key: str) -> int:
    return MAX_USER_FAILURES if key.startswith("user") else MAX_ADDRESS_FAILURES


def _locked(key: str, until: datetime, now: datetime) -> LimitExceeded:
    kind, _, value = key.partition(":")
    if "#" in kind:  # an overlong name, counted by its hash
        who = "this user name" if kind.startswith("user") else "this address"
    else:
        who = f"user {value!r}" if kind == "user" else f"address {value}"
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return LimitExceeded(
        f"too many failed logins for {who}; try again in {minutes} minute(s), "
        f"after {until:%Y-%m-%d %H:%M:%S} UTC",
        retry_at=until,
    )
