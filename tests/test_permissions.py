"""Roles and record scopes, enforced once in the data layer (engine/permissions.py).

The matrix runs every shipped role (plus two roles of an admin's roles.yaml, so every
scope is exercised) against every kind of entity, operation and relation of a record to
the actor, and compares the outcome with a small oracle written from the rules of issue 4
and the roles' declared scopes - never with the code under test. The dataset is built
once per test; each write is attempted in a transaction that is rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pony.orm import db_session

from guanxi.engine import (
    SYSTEM,
    Actor,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from guanxi.engine.permissions import add_member, members, remove_member

SHIPPED_ROLES = ("admin", "executive", "sales_supervisor", "customer_manager", "finance")
ROLES_YAML = """\
roles:
  team_lead:
    default: {read: team, create: team, update: team, delete: team}
  pool_worker:
    default: {read: own_or_unowned, create: own_or_unowned, update: own_or_unowned, delete: own}
  auditor:
    default: {read: all, create: none, update: none, delete: none}
    hidden_fields: {Account: [revenue]}
  quiet_manager:
    default: {read: own, create: own, update: own, delete: none}
    hidden_fields: {Account: [revenue]}
  user_keeper:
    default: {read: none, create: none, update: none, delete: none}
    entities:
      User: {read: all, create: all, update: all, delete: all}
      Team: {read: all, create: all, update: all, delete: all}
"""
MATRIX_ROLES = (*SHIPPED_ROLES, "team_lead", "pool_worker")
ACCOUNT_FLOW = """\
workflow: account_flow
label: Account flow
entity: Account
field: stage
initial: prospect
states:
  prospect: {label: Prospect}
  active: {label: Active}
  closed: {label: Closed, final: true, outcome: lost}
transitions:
  - {trigger: activate, source: prospect, dest: active}
  - {trigger: close, source: [prospect, active], dest: closed}
"""
#: How a record relates to the acting user "me" (team East, with sub-team East/1).
RELATIONS = ("own", "team", "sub_team", "member_read", "member_edit", "other_team", "pool")
OPERATIONS = ("get", "list", "create", "update", "delete")


# -- the oracle ---------------------------------------------------------------------------
def reaches(scope: str, relation: str, operation: str) -> bool:
    """Whether ``scope`` lets ``operation`` reach an owned record in ``relation`` to the
    actor: read members read, edit members also update and add records under it, only
    owners delete (issue 4)."""
    if scope in ("all", "none"):
        return scope == "all"
    mine = relation == "own" or (relation, operation) in {
        ("member_read", "read"),
        ("member_edit", "read"),
        ("member_edit", "create"),
        ("member_edit", "update"),
    }
    if scope == "own":
        return mine
    if scope == "team":
        return mine or relation in ("team", "sub_team")
    assert scope == "own_or_unowned"
    return mine or relation == "pool"


def allowed(engine, roles, entity: str, operation: str, relation: str) -> bool:
    """The union over ``roles`` of what their declared scopes allow."""
    if "admin" in roles:
        return True
    for role in roles:
        scope = engine.role_defs[role].scope(entity, operation)
        if entity == "Region":  # neither owned nor owned through a ref
            if scope != "none":
                return True
        elif reaches(scope, relation, operation):
            return True
    return False


def expected(engine, roles, entity: str, op: str, relation: str) -> Any:
    readable = allowed(engine, roles, entity, "read", relation)
    if op == "get":
        return "ok" if readable else "NotFound"
    if op == "list":
        return int(readable)
    if op == "create":
        if entity == "AccountNote" and not allowed(engine, roles, "Account", "read", relation):
            return "ValidationError"  # the parent account does not exist for this actor
        return "ok" if allowed(engine, roles, entity, "create", relation) else "PermissionDenied"
    if not readable:
        return "NotFound"
    return "ok" if allowed(engine, roles, entity, op, relation) else "PermissionDenied"


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def build(make_engine, home, test_plugin):
    """An engine with the installed sales plugin (the shipped roles) and the test entities."""
    (home / "roles.yaml").write_text(ROLES_YAML, encoding="utf-8")

    def build(*, workflow: bool = False):
        if workflow:
            (home / "workflows" / "account_flow.yaml").write_text(ACCOUNT_FLOW, encoding="utf-8")
        return make_engine(
            test_plugin("scoped"), use_entry_points=True, plugins=("sales", "scoped")
        )

    return build


@pytest.fixture
def engine(build):
    return build()


class World:
    """Teams, users and one account, note and visit per relation to the user "me"."""

    def __init__(self, engine) -> None:
        create = engine.records.create
        self.engine = engine
        east = create("Team", {"name": "East"}).id
        east_sub = create("Team", {"name": "East/1", "parent": east}).id
        west = create("Team", {"name": "West"}).id
        self.teams = {"east": east, "east_sub": east_sub, "west": west}
        self.users = {
            name: create("User", {"username": name, "team": team}).id
            for name, team in (
                ("me", east),
                ("mate", east),
                ("junior", east_sub),
                ("stranger", west),
            )
        }
        self.owners = {
            "own": self.users["me"],
            "team": self.users["mate"],
            "sub_team": self.users["junior"],
            "member_read": self.users["stranger"],
            "member_edit": self.users["stranger"],
            "other_team": self.users["stranger"],
            "pool": None,
        }
        self.region = create("Region", {"name": "North"}).id
        self.accounts: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.visits: dict[str, int] = {}
        for relation in RELATIONS:
            account = create(
                "Account",
                {"name": f"{relation} Co", "revenue": "100", "owner": self.owners[relation]},
            ).id
            self.accounts[relation] = account
            self.notes[relation] = create(
                "AccountNote", {"account": account, "text": f"about {relation}"}
            ).id
            self.visits[relation] = create(
                "Visit", {"subject": f"visit {relation}", "account": account}
            ).id
        add_member(engine, "Account", self.accounts["member_read"], self.users["me"], "read")
        add_member(engine, "Account", self.accounts["member_edit"], self.users["me"], "edit")

    def me(self, *roles: str) -> Actor:
        return Actor(
            id=self.users["me"],
            username="me",
            roles=frozenset(roles),
            team_id=self.teams["east"],
            team_ids=frozenset({self.teams["east"], self.teams["east_sub"]}),
        )

    def record(self, entity: str, relation: str) -> int:
        if entity == "Region":
            return self.region
        return {"Account": self.accounts, "AccountNote": self.notes}[entity][relation]

    def new_values(self, entity: str, relation: str) -> dict[str, Any]:
        if entity == "Account":
            return {"name": "New Co", "owner": self.owners[relation]}
        if entity == "AccountNote":
            return {"account": self.accounts[relation], "text": "new"}
        return {"name": "South"}


@pytest.fixture
def world(engine) -> World:
    return World(engine)


class _Rollback(Exception):
    pass


def outcome(action: Callable[[], Any]) -> str:
    """``ok`` or the name of the error ``action`` raised; its writes are rolled back."""
    result = "ok"
    try:
        with db_session:
            try:
                action()
            except (NotFound, PermissionDenied, ValidationError) as exc:
                result = type(exc).__name__
            raise _Rollback
    except _Rollback:
        pass
    return result


def attempt(world: World, actor: Actor, entity: str, op: str, relation: str) -> Any:
    records = world.engine.records
    rid = world.record(entity, relation)
    if op == "list":
        return records.list(entity, actor=actor, filter={"id": {"eq": rid}}).total_count
    if op == "get":
        return outcome(lambda: records.get(entity, rid, actor=actor))
    if op == "create":
        values = world.new_values(entity, relation)
        return outcome(lambda: records.create(entity, values, actor=actor))
    if op == "update":
        field = "text" if entity == "AccountNote" else "name"
        return outcome(lambda: records.update(entity, rid, {field: "changed"}, actor=actor))
    return outcome(lambda: records.delete(entity, rid, actor=actor))


# -- the matrix -----------------------------------------------------------------------------
def test_every_role_entity_operation_and_relation_follows_the_declared_scopes(engine, world):
    failures, checked = [], 0
    for role in MATRIX_ROLES:
        actor = world.me(role)
        for entity in ("Account", "AccountNote", "Region"):
            relations = RELATIONS if entity != "Region" else ("other_team",)
            for op in OPERATIONS:
                for relation in relations:
                    if op == "create" and entity == "Account" and relation.startswith("member"):
                        continue  # a new record has no members yet
                    want = expected(engine, {role}, entity, op, relation)
                    got = attempt(world, actor, entity, op, relation)
                    checked += 1
                    if got != want:
                        failures.append(f"{role} {op} {entity} ({relation}): {got}, want {want}")
    assert checked == len(MATRIX_ROLES) * (2 * 7 * 5 - 2 + 5)
    assert not failures, "\n".join(failures)
    # every attempt was rolled back: the next one met the same dataset
    names = {r.name for r in engine.records.list("Account").records}
    assert names == {f"{relation} Co" for relation in RELATIONS}


def test_the_matrix_covers_every_scope(engine):
    declared = {
        engine.role_defs[role].scope(entity, op)
        for role in MATRIX_ROLES
        if role != "admin"
        for entity in ("Account", "AccountNote", "Region")
        for op in ("read", "create", "update", "delete")
    }
    assert declared == {"none", "own", "team", "own_or_unowned", "all"}


# -- reading ------------------------------------------------------------------------------
def test_list_totals_count_only_visible_records(engine, world):
    page = engine.records.list("Account", actor=world.me("customer_manager"), first=1)
    assert page.total_count == 3 and page.has_next_page
    every = engine.records.list("Account", actor=world.me("customer_manager"))
    assert {r.id for r in every.records} == {
        world.accounts[r] for r in ("own", "member_read", "member_edit")
    }
    supervisor = engine.records.list("AccountNote", actor=world.me("sales_supervisor"))
    assert supervisor.total_count == 5  # own, team, sub-team and the two shared accounts'


def test_a_nested_ref_filter_does_not_reveal_invisible_parents(engine, world):
    manager = world.me("customer_manager")

    def visits(name: str) -> int:
        flt = {"account": {"name": {"eq": name}}}
        return engine.records.list("Visit", actor=manager, filter=flt).total_count

    # visits are not owned, so the manager reads all of them, but not the other accounts
    assert engine.records.list("Visit", actor=manager).total_count == len(RELATIONS)
    assert visits("own Co") == 1
    assert visits("other_team Co") == 0
    assert visits("pool Co") == 0
    negated = {"not": {"account": {"name": {"eq": "other_team Co"}}}}
    assert engine.records.list("Visit", actor=manager, filter=negated).total_count == 7


def test_an_owner_via_chain_follows_the_parent(engine, world):
    manager = world.me("customer_manager")
    notes = engine.records.list("AccountNote", actor=manager)
    assert {n.id for n in notes.records} == {
        world.notes[r] for r in ("own", "member_read", "member_edit")
    }


def test_parts_follow_their_parent(engine, world):
    manager = world.me("customer_manager")
    mine = engine.records.create(
        "Account", {"name": "Mine", "contacts": [{"name": "Ms Li"}]}, actor=manager
    )
    engine.records.create("Account", {"name": "Theirs", "contacts": [{"name": "Mr Wu"}]})
    shared = world.accounts["member_edit"]
    engine.records.update("Account", shared, {"contacts": [{"name": "Mr Ma"}]}, actor=manager)
    with pytest.raises(PermissionDenied):
        engine.records.update(
            "Account", world.accounts["member_read"], {"contacts": []}, actor=manager
        )
    contacts = engine.records.list("AccountContact", actor=manager).records
    assert {(c.name, c.account) for c in contacts} == {("Ms Li", mine.id), ("Mr Ma", shared)}


def test_users_and_teams_are_readable_by_every_user(engine, world):
    manager = world.me("customer_manager")
    assert engine.records.list("User", actor=manager).total_count == 4
    assert engine.records.list("Team", actor=manager).total_count == 3
    nobody = Actor(id=world.users["stranger"], username="stranger")
    assert engine.records.get("User", world.users["me"], actor=nobody).username == "me"


def test_an_actor_without_roles_reads_no_business_record(engine, world):
    nobody = Actor(id=world.users["me"], username="me")
    assert engine.records.list("Account", actor=nobody).total_count == 0
    assert engine.records.list("Region", actor=nobody).total_count == 0
    with pytest.raises(NotFound):
        engine.records.get("Account", world.accounts["own"], actor=nobody)


# -- hidden fields -----------------------------------------------------------------------------
def test_a_hidden_field_reads_as_none(engine, world):
    auditor = world.me("auditor")
    rid = world.accounts["other_team"]
    assert engine.records.get("Account", rid, actor=auditor).revenue is None
    page = engine.records.list("Account", actor=auditor)
    assert page.total_count == 7 and all(r.revenue is None for r in page.records)
    assert engine.records.get("Account", rid, actor=world.me("executive")).revenue == 100
    assert engine.records.get("Account", rid).revenue == 100  # the system sees everything


def test_a_field_is_hidden_only_when_every_reading_role_hides_it(engine, world):
    rid = world.accounts["own"]
    both = world.me("auditor", "executive")
    assert engine.records.get("Account", rid, actor=both).revenue == 100
    # customer_manager reads only its own accounts, but it reads Account: it shows revenue
    assert engine.records.get("Account", rid, actor=world.me("auditor", "customer_manager")).revenue
    assert engine.policy.readable_field(engine.registry["Account"], both, "revenue")


def test_a_hidden_field_cannot_be_filtered_or_ordered_on(engine, world):
    auditor = world.me("auditor")
    with pytest.raises(ValidationError, match="has no field 'revenue' to filter on"):
        engine.records.list("Account", actor=auditor, filter={"revenue": {"gt": 1}})
    with pytest.raises(ValidationError, match="has no field 'revenue'"):
        engine.records.list("Visit", actor=auditor, filter={"account": {"revenue": {"gt": 1}}})
    with pytest.raises(ValidationError, match="cannot be ordered by 'revenue'"):
        engine.records.list("Account", actor=auditor, order_by=[{"revenue": "DESC"}])


def test_a_hidden_field_cannot_be_written(engine, world):
    quiet = world.me("quiet_manager")
    with pytest.raises(PermissionDenied, match=r"Account\.revenue"):
        engine.records.create("Account", {"name": "Q", "revenue": "5"}, actor=quiet)
    with pytest.raises(PermissionDenied, match=r"Account\.revenue"):
        engine.records.update("Account", world.accounts["own"], {"revenue": "5"}, actor=quiet)
    with pytest.raises(PermissionDenied, match=r"Account\.revenue"):
        engine.records.create_many("Account", [{"name": "Q", "revenue": "5"}], actor=quiet)
    assert engine.records.get("Account", world.accounts["own"]).revenue == 100
    assert (
        engine.records.update(
            "Account", world.accounts["own"], {"name": "Quiet Co"}, actor=quiet
        ).revenue
        is None
    )


def test_internal_fields_never_leak_even_to_admins(engine, world):
    engine.records.update("User", world.users["mate"], {"password_hash": "secret-hash"})
    admin = Actor(id=world.users["me"], username="me", roles=frozenset({"admin"}))
    assert engine.records.get("User", world.users["mate"], actor=admin).password_hash is None
    with pytest.raises(ValidationError):
        engine.records.list("User", actor=admin, filter={"password_hash": {"isNull": False}})
    assert engine.records.get("User", world.users["mate"]).password_hash == "secret-hash"


# -- writing ------------------------------------------------------------------------------
def test_only_admins_write_roles_team_active_and_passwords(engine, world):
    me = world.me("customer_manager")
    uid = world.users["me"]
    for field, value in (
        ("roles", ["admin"]),
        ("team", world.teams["west"]),
        ("active", False),
        ("password_hash", "x"),
    ):
        with pytest.raises(PermissionDenied, match=rf"only admins may write User\.{field}"):
            engine.records.update("User", uid, {field: value}, actor=me)
    assert engine.records.update("User", uid, {"display_name": "Me"}, actor=me).display_name
    with pytest.raises(PermissionDenied):
        engine.records.update("User", world.users["mate"], {"display_name": "X"}, actor=me)
    admin = world.me("admin")
    assert engine.records.update("User", world.users["mate"], {"roles": ["finance"]}, actor=admin)


def test_no_role_widens_the_fixed_rules_on_users_and_teams(engine, world):
    keeper = world.me("user_keeper")
    with pytest.raises(PermissionDenied):
        engine.records.create("User", {"username": "new"}, actor=keeper)
    with pytest.raises(PermissionDenied):
        engine.records.create("Team", {"name": "South"}, actor=keeper)
    with pytest.raises(PermissionDenied):
        engine.records.delete("User", world.users["stranger"], actor=keeper)
    with pytest.raises(PermissionDenied):
        engine.records.update("Team", world.teams["west"], {"name": "Far West"}, actor=keeper)
    with pytest.raises(PermissionDenied, match=r"User\.roles"):
        engine.records.update("User", world.users["me"], {"roles": ["admin"]}, actor=keeper)
    admin = world.me("admin")
    assert engine.records.create("Team", {"name": "South"}, actor=admin).name == "South"


def test_an_update_changing_nothing_still_needs_update_scope(engine, world):
    rid = world.accounts["own"]
    with pytest.raises(PermissionDenied):
        engine.records.update("Account", rid, {"name": "own Co"}, actor=world.me("executive"))


def test_a_hand_over_must_stay_within_the_scope(engine, world):
    rid = world.accounts["own"]
    stranger = world.users["stranger"]
    with pytest.raises(PermissionDenied, match="hand Account"):
        engine.records.update(
            "Account", rid, {"owner": stranger}, actor=world.me("customer_manager")
        )
    with pytest.raises(PermissionDenied, match="hand AccountNote"):
        engine.records.update(
            "AccountNote",
            world.notes["own"],
            {"account": world.accounts["member_read"]},
            actor=world.me("customer_manager"),
        )
    supervisor = world.me("sales_supervisor")
    moved = engine.records.update(
        "Account", rid, {"owner": world.users["junior"]}, actor=supervisor
    )
    assert moved.owner == world.users["junior"]
    with pytest.raises(PermissionDenied):
        engine.records.update("Account", rid, {"owner": None}, actor=supervisor)


def test_create_many_checks_the_create_scope_and_writes_nothing_when_refused(engine, world):
    rows = [{"name": "Mine"}, {"name": "Theirs", "owner": world.users["stranger"]}]
    with pytest.raises(PermissionDenied):
        engine.records.create_many("Account", rows, actor=world.me("customer_manager"))
    assert engine.records.list("Account").total_count == len(RELATIONS)


def test_records_created_by_a_user_are_theirs(engine, world):
    created = engine.records.create("Account", {"name": "Mine"}, actor=world.me("customer_manager"))
    assert created.owner == world.users["me"]


def test_restore_needs_the_delete_scope(engine, world):
    lead = world.me("team_lead")
    rid = world.accounts["team"]
    engine.records.delete("Account", rid, actor=lead)
    assert engine.records.restore("Account", rid, actor=lead).deleted_at is None
    engine.records.delete("Account", world.accounts["pool"])
    with pytest.raises(PermissionDenied):
        engine.records.restore("Account", world.accounts["pool"], actor=world.me("pool_worker"))


def test_a_refusal_names_role_and_record_but_not_its_content(engine, world):
    rid = world.accounts["member_read"]
    with pytest.raises(PermissionDenied) as info:
        engine.records.update("Account", rid, {"name": "x"}, actor=world.me("customer_manager"))
    message = str(info.value)
    assert message.startswith(f"customer_manager may not update Account #{rid}")
    assert "shared with you for reading" in message and "member_read Co" not in message
    with pytest.raises(PermissionDenied, match="in the shared pool"):
        engine.records.delete("Account", world.accounts["pool"], actor=world.me("pool_worker"))


def test_the_union_of_two_roles(engine, world):
    both = world.me("customer_manager", "finance")
    other = world.accounts["other_team"]
    assert engine.records.get("Account", other, actor=both).name == "other_team Co"
    with pytest.raises(PermissionDenied):
        engine.records.update("Account", other, {"name": "x"}, actor=both)
    assert engine.records.update("Account", world.accounts["own"], {"name": "y"}, actor=both)
    team = world.me("customer_manager", "sales_supervisor")
    assert engine.records.list("Account", actor=team).total_count == 5
    assert engine.records.update("Account", world.accounts["sub_team"], {"name": "z"}, actor=team)


# -- workflows ----------------------------------------------------------------------------
def test_firing_a_transition_needs_update_scope(build):
    engine = build(workflow=True)
    world = World(engine)
    fire = engine.runtime.fire_transition
    manager = world.me("customer_manager")
    assert fire("Account", world.accounts["own"], "activate", manager).state == "active"
    assert fire("Account", world.accounts["member_edit"], "activate", manager).state == "active"
    with pytest.raises(PermissionDenied):
        fire("Account", world.accounts["member_read"], "activate", manager)
    with pytest.raises(NotFound):
        fire("Account", world.accounts["other_team"], "activate", manager)
    with pytest.raises(PermissionDenied):
        fire("Account", world.accounts["other_team"], "activate", world.me("executive"))
    assert engine.records.get("Account", world.accounts["other_team"]).stage == "prospect"


# -- members ------------------------------------------------------------------------------
def test_adding_a_member_needs_update_scope_on_the_record(engine, world):
    manager = world.me("customer_manager")
    mate = world.users["mate"]
    with pytest.raises(NotFound):
        add_member(engine, "Account", world.accounts["other_team"], mate, "read", actor=manager)
    with pytest.raises(PermissionDenied):
        add_member(engine, "Account", world.accounts["member_read"], mate, "read", actor=manager)
    member = add_member(engine, "Account", world.accounts["own"], mate, "edit", actor=manager)
    assert (member.user_id, member.access, member.added_by) == (mate, "edit", world.users["me"])


def test_a_member_sees_the_record_and_edits_it_only_with_edit_access(engine, world):
    rid = world.accounts["other_team"]
    manager = world.me("customer_manager")
    with pytest.raises(NotFound):
        engine.records.get("Account", rid, actor=manager)
    add_member(engine, "Account", rid, world.users["me"], "read")
    assert engine.records.get("Account", rid, actor=manager).id == rid
    with pytest.raises(PermissionDenied):
        engine.records.update("Account", rid, {"name": "x"}, actor=manager)
    add_member(engine, "Account", rid, world.users["me"], "edit")
    assert engine.records.update("Account", rid, {"name": "x"}, actor=manager).name == "x"
    assert remove_member(engine, "Account", rid, world.users["me"], actor=manager)
    with pytest.raises(NotFound):
        engine.records.get("Account", rid, actor=manager)


def test_members_are_listed_and_their_changes_audited(engine, world):
    rid = world.accounts["own"]
    manager = world.me("customer_manager")
    add_member(engine, "Account", rid, world.users["mate"], "read", actor=manager)
    add_member(engine, "Account", rid, world.users["junior"], "edit", actor=manager)
    listed = members(engine, "Account", rid, actor=manager)
    assert [(m.user_id, m.access) for m in listed] == [
        (world.users["mate"], "read"),
        (world.users["junior"], "edit"),
    ]
    assert remove_member(engine, "Account", rid, world.users["mate"], actor=manager)
    assert not remove_member(engine, "Account", rid, world.users["mate"], actor=manager)
    trail = [t for t in engine.records.audit_trail("Account", rid) if "members" in t["changes"]]
    assert [t["action"] for t in trail] == ["member_add", "member_add", "member_remove"]
    assert trail[0]["changes"]["members"] == [None, {"user": world.users["mate"], "access": "read"}]
    with pytest.raises(NotFound):
        members(engine, "Account", world.accounts["other_team"], actor=manager)


def test_a_read_member_may_leave_a_record(engine, world):
    rid = world.accounts["member_read"]
    manager = world.me("customer_manager")
    assert remove_member(engine, "Account", rid, world.users["me"], actor=manager)
    with pytest.raises(NotFound):
        engine.records.get("Account", rid, actor=manager)


def test_members_are_refused_where_they_mean_nothing(engine, world):
    with pytest.raises(ValidationError, match="members"):
        add_member(engine, "Region", world.region, world.users["me"])
    with pytest.raises(ValidationError, match="read or edit"):
        add_member(engine, "Account", world.accounts["own"], world.users["me"], "owner")
    with pytest.raises(ValidationError, match="User #999 does not exist"):
        add_member(engine, "Account", world.accounts["own"], 999)
    assert members(engine, "Account", world.accounts["own"], actor=SYSTEM) == []
