"""Users, passwords, tokens and login throttling (``engine.auth``), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from pony.orm import db_session

from guanxi.engine import Actor, NotFound, PermissionDenied, ValidationError, hookimpl
from guanxi.engine.auth import default_hasher
from guanxi.engine.errors import LimitExceeded, Unauthenticated

from .conftest import T0

PASSWORD = "correct horse battery"
#: Cheap argon2id parameters so tests that fail many logins stay quick; the parameters
#: of production are checked by their own test.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Roles:
    """A plugin contributing two business roles."""

    name = "roles"

    @hookimpl
    def register_roles(self, register):
        read_all = {"read": "all", "create": "none", "update": "none", "delete": "none"}
        register("clerk", {"label": "Clerk", "default": read_all})
        register("auditor", {"label": "Auditor", "default": read_all})


@pytest.fixture
def build(make_engine, clock):
    def build(*, hasher=FAST):
        engine = make_engine(Roles(), clock=clock)
        engine.auth.hasher = hasher
        return engine

    return build


@pytest.fixture
def engine(build):
    return build()


@pytest.fixture
def teams(engine):
    """sales > east > shanghai, and an unrelated north."""
    create = engine.records.create
    sales = create("Team", {"name": "sales"})
    east = create("Team", {"name": "east", "parent": sales.id})
    shanghai = create("Team", {"name": "shanghai", "parent": east.id})
    north = create("Team", {"name": "north"})
    return {t.name: t.id for t in (sales, east, shanghai, north)}


@pytest.fixture
def wang(engine, teams):
    return engine.auth.create_user(
        "wang", password=PASSWORD, roles=["clerk"], team="sales", display_name="Wang Fang"
    )


def login(engine, username="wang", password=PASSWORD, address="10.0.0.1"):
    return engine.auth.login(username, password, address=address)


def stored_user(engine, user_id):
    with db_session:
        user = engine.classes["User"][user_id]
        return {"password_hash": user.password_hash, "row": user.to_dict()}


def fields(error: ValidationError) -> set[str | None]:
    return {p.field for p in error.problems}


# -- passwords ----------------------------------------------------------------------------
def test_passwords_are_hashed_with_argon2id_and_never_stored_in_clear(build, teams):
    engine = build(hasher=default_hasher())  # the production parameters
    user = engine.auth.create_user("wang", password=PASSWORD, roles=["clerk"])
    stored = stored_user(engine, user.id)
    assert stored["password_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in repr(stored["row"])
    assert PASSWORD not in repr(engine.records.audit_trail("User", user.id))


def test_the_user_record_returned_never_carries_the_password_hash(engine, wang):
    assert "password_hash" not in wang
    assert "password_hash" not in login(engine).user


def test_a_short_password_is_refused_naming_the_field_password(engine):
    with pytest.raises(ValidationError, match="at least 8 characters") as info:
        engine.auth.create_user("wang", password="short")
    assert fields(info.value) == {"password"}


def test_a_user_without_a_password_cannot_log_in(engine):
    engine.auth.create_user("robot", roles=["clerk"])
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        login(engine, "robot", "")


def test_an_outdated_hash_is_rehashed_at_login_and_other_sessions_live_on(engine, wang):
    first = login(engine)
    engine.auth.hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    login(engine)
    assert stored_user(engine, wang.id)["password_hash"].startswith("$argon2id$v=19$m=2048,t=2")
    assert engine.auth.authenticate(first.token).username == "wang"


# -- users --------------------------------------------------------------------------------
def test_unknown_roles_are_refused_naming_the_field_roles(engine):
    with pytest.raises(ValidationError, match="'boss'") as info:
        engine.auth.create_user("wang", roles=["clerk", "boss"])
    assert fields(info.value) == {"roles"}


def test_an_unknown_team_is_refused_naming_the_field_team(engine, teams):
    with pytest.raises(ValidationError, match="no team named 'west'") as info:
        engine.auth.create_user("wang", team="west")
    assert fields(info.value) == {"team"}


def test_only_admins_create_users(engine, wang):
    clerk = engine.auth.actor_for(wang.id)
    with pytest.raises(PermissionDenied):
        engine.auth.create_user("li", roles=["admin"], actor=clerk)


def test_the_audit_names_the_admin_who_created_a_user(engine):
    admin = Actor(id=None, username="root", roles=frozenset({"admin"}))
    user = engine.auth.create_user("li", roles=["clerk"], actor=admin)
    assert engine.records.audit_trail("User", user.id)[0]["actor"] == "root"


# -- tokens -------------------------------------------------------------------------------
def test_login_returns_a_token_that_authenticates_as_the_user(engine, wang, teams):
    actor = engine.auth.authenticate(login(engine).token)
    assert (actor.id, actor.username, actor.roles) == (wang.id, "wang", frozenset({"clerk"}))
    assert actor.team_id == teams["sales"]
    assert not actor.is_system and not actor.is_admin


def test_the_actor_team_ids_hold_the_team_and_all_its_sub_teams(engine, wang, teams):
    actor = engine.auth.authenticate(login(engine).token)
    assert actor.team_ids == {teams["sales"], teams["east"], teams["shanghai"]}


def test_a_user_without_a_team_has_no_team_ids(engine):
    user = engine.auth.create_user("li", roles=["clerk"])
    actor = engine.auth.actor_for(user.id)
    assert (actor.team_id, actor.team_ids) == (None, frozenset())


def test_tokens_are_stored_only_as_their_sha256(engine, wang):
    token = login(engine).token
    with db_session:
        rows = [r.to_dict() for r in engine.classes["GxToken"].select()]
    assert [r["token_hash"] for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr(rows)


def test_a_token_is_32_random_bytes(engine, wang):
    tokens = {login(engine).token for _ in range(3)}
    assert len(tokens) == 3
    assert all(len(t) == 43 for t in tokens)  # token_urlsafe(32)


def test_an_unknown_token_is_unauthenticated(engine, wang):
    with pytest.raises(Unauthenticated, match="not valid"):
        engine.auth.authenticate("not-a-token")


def test_an_empty_token_is_unauthenticated(engine):
    with pytest.raises(Unauthenticated, match="no token"):
        engine.auth.authenticate("")


def test_an_expired_token_is_unauthenticated(engine, wang, clock):
    issued = engine.auth.issue_token(wang.id, days=1)
    clock.advance(days=1)
    with pytest.raises(Unauthenticated, match="expired"):
        engine.auth.authenticate(issued.token)


def test_a_token_works_until_it_expires(engine, wang, clock):
    issued = engine.auth.issue_token(wang.id, days=1)
    assert issued.expires_at == T0 + timedelta(days=1)
    clock.advance(hours=23, minutes=59)
    assert engine.auth.authenticate(issued.token).id == wang.id


def test_a_revoked_token_is_unauthenticated(engine, wang):
    token = login(engine).token
    assert engine.auth.revoke_user_tokens(wang.id) == 1
    with pytest.raises(Unauthenticated, match="revoked"):
        engine.auth.authenticate(token)


def test_logout_ends_that_token_only(engine, wang):
    leaving, staying = login(engine).token, login(engine).token
    assert engine.auth.logout(leaving) is True
    with pytest.raises(Unauthenticated, match="revoked"):
        engine.auth.authenticate(leaving)
    assert engine.auth.authenticate(staying).id == wang.id


def test_logout_of_an_unknown_token_changes_nothing(engine, wang):
    assert engine.auth.logout("not-a-token") is False


def test_token_use_is_noted(engine, wang, clock):
    issued = engine.auth.issue_token(wang.id, label="crm sync")
    clock.advance(minutes=5)
    engine.auth.authenticate(issued.token)
    with db_session:
        row = engine.classes["GxToken"].get(
            token_hash=hashlib.sha256(issued.token.encode()).hexdigest()
        )
        assert (row.last_used_at, row.label) == (T0 + timedelta(minutes=5), "crm sync")


def test_token_days_must_be_positive(engine, wang):
    with pytest.raises(ValidationError) as info:
        engine.auth.issue_token(wang.id, days=0)
    assert fields(info.value) == {"days"}


def test_only_admins_issue_tokens_for_another_user(engine, wang):
    li = engine.auth.create_user("li", roles=["clerk"])
    with pytest.raises(PermissionDenied):
        engine.auth.issue_token(li.id, actor=engine.auth.actor_for(wang.id))


def test_a_deactivated_user_gets_no_token(engine, wang):
    engine.records.update("User", wang.id, {"active": False})
    with pytest.raises(ValidationError, match="deactivated"):
        engine.auth.issue_token(wang.id)


def test_roles_no_longer_loaded_are_left_out_of_the_actor(engine, wang):
    with db_session:
        engine.classes["User"][wang.id].roles = ["clerk", "retired_role"]
    assert engine.auth.actor_for(wang.id).roles == {"clerk"}


# -- tokens die with the user's changes ---------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda e, u, t: e.auth.set_password(u, "new password!", actor=_admin()), id="password"
        ),
        pytest.param(
            lambda e, u, t: e.records.update("User", u, {"roles": ["auditor"]}), id="roles"
        ),
        pytest.param(lambda e, u, t: e.records.update("User", u, {"team": t["north"]}), id="team"),
        pytest.param(
            lambda e, u, t: e.records.update("User", u, {"active": False}), id="deactivation"
        ),
        pytest.param(lambda e, u, t: e.records.delete("User", u), id="deletion"),
    ],
)
def test_tokens_die_when_the_user_changes(engine, wang, teams, change):
    tokens = [login(engine).token, engine.auth.issue_token(wang.id).token]
    change(engine, wang.id, teams)
    for token in tokens:
        with pytest.raises(Unauthenticated):
            engine.auth.authenticate(token)


def test_tokens_live_on_when_the_display_name_changes(engine, wang):
    token = login(engine).token
    engine.records.update("User", wang.id, {"display_name": "Wang F."})
    assert engine.auth.authenticate(token).id == wang.id


def test_a_deactivated_user_cannot_log_in(engine, wang):
    engine.records.update("User", wang.id, {"active": False})
    with pytest.raises(Unauthenticated, match="^wrong user name or password$"):
        login(engine)


def _admin() -> Actor:
    return Actor(id=None, username="root", roles=frozenset({"admin"}))


# -- passwords changed --------------------------------------------------------------------
def test_an_admin_sets_a_password_and_only_the_new_one_logs_in(engine, wang):
    engine.auth.set_password(wang.id, "new password!", actor=_admin())
    assert login(engine, password="new password!").user["id"] == wang.id
    with pytest.raises(Unauthenticated):
        login(engine)


def test_a_user_changes_their_own_password_giving_the_current_one(engine, wang):
    me = engine.auth.actor_for(wang.id)
    engine.auth.set_password(wang.id, "new password!", actor=me, current_password=PASSWORD)
    assert login(engine, password="new password!").user["id"] == wang.id


def test_a_user_must_give_the_right_current_password(engine, wang):
    me = engine.auth.actor_for(wang.id)
    with pytest.raises(ValidationError) as info:
        engine.auth.set_password(wang.id, "new password!", actor=me, current_password="guess!!!")
    assert fields(info.value) == {"current_password"}
    assert login(engine).user["id"] == wang.id


def test_a_user_may_not_set_another_users_password(engine, wang):
    li = engine.auth.create_user("li", roles=["clerk"])
    with pytest.raises(PermissionDenied):
        engine.auth.set_password(li.id, "new password!", actor=engine.auth.actor_for(wang.id))


def test_a_new_short_password_is_refused_naming_the_field_password(engine, wang):
    with pytest.raises(ValidationError) as info:
        engine.auth.set_password(wang.id, "1234567", actor=_admin())
    assert fields(info.value) == {"password"}


def test_a_password_for_a_missing_user_is_not_found(engine):
    with pytest.raises(NotFound):
        engine.auth.set_password(404, "new password!", actor=_admin())


# -- failed logins ------------------------------------------------------------------------
def test_a_wrong_user_and_a_wrong_password_get_the_same_message(engine, wang):
    messages = set()
    for username, password in [("wang", "wrong password"), ("nobody", PASSWORD)]:
        with pytest.raises(Unauthenticated) as info:
            login(engine, username, password)
        messages.add(str(info.value))
    assert messages == {"wrong user name or password"}


class CountingHasher(PasswordHasher):
    """The fast hasher, noting which hashes it verifies against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash, password):  # type: ignore[override]
        self.verified.append(hash)
        return super().verify(hash, password)


def test_a_wrong_user_costs_one_password_verification_like_a_wrong_password(engine, wang):
    engine.auth.hasher = hasher = CountingHasher()
    for username in ("wang", "nobody"):
        with pytest.raises(Unauthenticated):
            login(engine, username, "wrong password")
    assert len(hasher.verified) == 2
    assert all(h.startswith("$argon2id$") for h in hasher.verified)


def test_after_five_failures_a_user_is_locked_even_with_the_right_password(engine, wang):
    for i in range(5):
        with pytest.raises(Unauthenticated):
            login(engine, password="wrong password", address=f"10.0.0.{i}")
    with pytest.raises(LimitExceeded, match="user 'wang'.*try again in 15 minute") as info:
        login(engine, address="10.0.1.1")
    assert info.value.details["retry_at"] == T0 + timedelta(minutes=15)


def test_after_twenty_failures_an_address_is_locked_for_every_user(engine, wang):
    for i in range(20):
        with pytest.raises(Unauthenticated):
            login(engine, f"user{i}", "wrong password", address="10.9.9.9")
    with pytest.raises(LimitExceeded, match="address 10.9.9.9"):
        login(engine, address="10.9.9.9")
    assert login(engine, address="10.0.0.1").user["id"] == wang.id


def test_a_user_lock_ends_after_fifteen_minutes(engine, wang, clock):
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            login(engine, password="wrong password")
    clock.advance(minutes=14, seconds=59)
    with pytest.raises(LimitExceeded):
        login(engine)
    clock.advance(seconds=1)
    assert login(engine).user["id"] == wang.id


def test_failures_older_than_fifteen_minutes_are_not_counted(engine, wang, clock):
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            login(engine, password="wrong password")
    clock.advance(minutes=15)
    with pytest.raises(Unauthenticated):
        login(engine, password="wrong password")
    assert login(engine).user["id"] == wang.id


def test_a_success_resets_the_users_failure_count(engine, wang):
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            login(engine, password="wrong password")
    login(engine)
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            login(engine, password="wrong password")
    assert login(engine).user["id"] == wang.id


def test_failures_are_counted_in_the_database_shared_by_all_workers(build, engine, wang):
    other = build()
    for worker in (engine, other, engine, other, engine):
        with pytest.raises(Unauthenticated):
            login(worker, password="wrong password")
    for worker in (engine, other):
        with pytest.raises(LimitExceeded):
            login(worker)


def test_an_overlong_user_name_is_counted_too(engine, wang):
    name = "x" * 500
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            login(engine, name, "wrong password")
    with pytest.raises(LimitExceeded, match="this user name"):
        login(engine, name, "wrong password")


# -- the engine's wiring ------------------------------------------------------------------
def test_the_auth_hook_is_not_listed_among_the_plugins(engine):
    assert [p.name for p in engine.plugins] == ["roles"]
    assert engine.pm.has_plugin("guanxi.auth")


def test_the_audit_trail_never_holds_the_password_hash(make_engine):
    engine = make_engine()
    user = engine.auth.create_user("li", password="a long secret")
    trail = engine.records.audit_trail("User", user.id)
    assert trail[0]["changes"]["password_hash"] == [None, "(changed)"]
    assert "argon2" not in repr(trail)
