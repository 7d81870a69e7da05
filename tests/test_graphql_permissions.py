"""The permission matrix of test_permissions.py, through GraphQL.

Every shipped role, every role of the test's roles.yaml and a few unions of two roles,
against every kind of entity (owned ``Account``, ``AccountNote`` owned through its account,
unowned ``Region``), operation (get by id, list total, create, update, delete) and relation
of a record to the acting user "me" (own, same team, sub-team, member read, member edit,
other team, shared pool). Each operation is a real GraphQL request with a real token of
"me"; the expected outcome comes from the oracle of test_permissions.py, written from the
rules of issue 4 and the roles' declared scopes, never from the code under test.

A refused write answers NOT_FOUND when the record is not visible and FORBIDDEN when it is
visible but not allowed (a note under an account the caller cannot see is VALIDATION: its
``accountId`` names no record), and changes nothing. The dataset is built once per test;
a successful delete is undone by the system before the next attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from guanxi.engine import NotFound
from guanxi.engine.permissions import add_member

from .graphql_client import GraphQLClient, code, graphql_client
from .test_permissions import (
    ACCOUNT_FLOW,
    RELATIONS,
    ROLES_YAML,
    SHIPPED_ROLES,
    World,
    allowed,
    expected,
)

TEST_ROLES = ("team_lead", "pool_worker", "auditor", "quiet_manager", "user_keeper")
#: Who "me" is in turn: every role alone, then unions of two roles.
ROLE_SETS: tuple[frozenset[str], ...] = (
    *(frozenset({role}) for role in (*SHIPPED_ROLES, *TEST_ROLES)),
    frozenset({"customer_manager", "finance"}),
    frozenset({"customer_manager", "sales_supervisor"}),
    frozenset({"pool_worker", "team_lead"}),
)
ENTITIES = ("Account", "AccountNote", "Region")
#: GraphQL names of each entity: (single, plural, the field an update changes).
NAMES = {
    "Account": ("account", "accounts", "name"),
    "AccountNote": ("accountNote", "accountNotes", "text"),
    "Region": ("region", "regions", "name"),
}
#: An answer's code in the oracle's words.
CODE_OUTCOMES = {
    "NOT_FOUND": "NotFound",
    "FORBIDDEN": "PermissionDenied",
    "VALIDATION": "ValidationError",
}


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


@pytest.fixture
def world(engine) -> World:
    return World(engine)


@pytest.fixture
def api(engine, world) -> Any:
    with graphql_client(engine) as api:
        yield api


def sign_in(world: World, roles: Iterable[str], user: str = "me") -> str:
    """Give ``user`` exactly ``roles`` (which ends their tokens) and a fresh token."""
    uid = world.users[user]
    world.engine.records.update("User", uid, {"roles": sorted(roles)})
    return world.engine.auth.issue_token(uid).token


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in result, result
    return result["data"]


def gid(value: int | None) -> str | None:
    return None if value is None else str(value)


# -- the matrix through GraphQL ----------------------------------------------------------------
def snapshot(world: World, entity: str, rid: int) -> dict[str, Any]:
    """The stored record as the system sees it, live or in the recycle bin."""
    records = world.engine.records
    try:
        return dict(records.get(entity, rid))
    except NotFound:
        return {"in the recycle bin": dict(records.get(entity, rid, deleted=True))}


def live_count(world: World, entity: str) -> int:
    return world.engine.records.list(entity, first=0).total_count


def answer(result: dict[str, Any]) -> str:
    """A mutation's answer in the oracle's words: ``ok`` or the error it stands for."""
    if "errors" not in result:
        return "ok"
    return CODE_OUTCOMES.get(code(result) or "", f"code {code(result)}")


def attempt(api: GraphQLClient, world: World, token: str, entity: str, op: str, rel: str) -> Any:
    """Run one operation over GraphQL; the outcome in the oracle's words."""
    single, plural, field = NAMES[entity]
    rid = world.record(entity, rel)
    if op == "get":
        result = api.gql(
            f"query($id: ID!) {{ {single}(id: $id) {{ id }} }}", {"id": gid(rid)}, token=token
        )
        if "errors" in result:
            return f"code {code(result)}"
        found = result["data"][single]
        if found is None:
            return "NotFound"
        return "ok" if found["id"] == gid(rid) else f"wrong record {found}"
    if op == "list":
        result = api.gql(
            f"query($id: ID!) {{ {plural}(filter: {{id: {{eq: $id}}}})"
            " { totalCount nodes { id } } }",
            {"id": gid(rid)},
            token=token,
        )
        if "errors" in result:
            return f"code {code(result)}"
        page = result["data"][plural]
        assert len(page["nodes"]) == page["totalCount"], page
        return page["totalCount"]
    kind = entity
    if op == "create":
        values = world.new_values(entity, rel)
        data = {"text": values["text"]} if entity == "AccountNote" else {"name": values["name"]}
        if entity == "Account":
            data["ownerId"] = gid(values["owner"])  # null: the shared pool
        elif entity == "AccountNote":
            data["accountId"] = gid(values["account"])
        before = live_count(world, entity)
        result = api.gql(
            f"mutation($input: {kind}CreateInput!) {{ create{kind}(input: $input) {{ id }} }}",
            {"input": data},
            token=token,
        )
        got = answer(result)
        if live_count(world, entity) != before + (got == "ok"):
            return f"{got}, but {live_count(world, entity) - before} record(s) were created"
        return got
    before = snapshot(world, entity, rid)
    if op == "update":
        result = api.gql(
            f"mutation($id: ID!, $input: {kind}UpdateInput!) "
            f"{{ update{kind}(id: $id, input: $input) {{ id }} }}",
            {"id": gid(rid), "input": {field: "changed"}},
            token=token,
        )
    else:
        result = api.gql(
            f"mutation($id: ID!) {{ delete{kind}(id: $id) }}", {"id": gid(rid)}, token=token
        )
        if "errors" not in result:
            assert result["data"][f"delete{kind}"] is True, result
            world.engine.records.restore(entity, rid)  # the next attempt meets the dataset
    got = answer(result)
    after = snapshot(world, entity, rid)
    if got != "ok" and after != before:
        return f"{got}, but the record changed"
    if got == "ok" and op == "update" and after.get(field) != "changed":
        return f"ok, but the record holds {after.get(field)!r}"
    return got


def test_every_role_entity_operation_and_relation_through_graphql(engine, world, api):
    failures, checked = [], 0
    old_token = None
    for roles in ROLE_SETS:
        token = sign_in(world, roles)
        if old_token is not None:  # a change of roles ends the user's tokens
            assert code(api.gql("{ me { id } }", token=old_token)) == "UNAUTHENTICATED"
        old_token = token
        me = ok(api.gql("{ me { username roles } }", token=token))["me"]
        assert me == {"username": "me", "roles": sorted(roles)}
        for entity in ENTITIES:
            relations = RELATIONS if entity != "Region" else ("other_team",)
            for op in ("get", "list", "create", "update", "delete"):
                for relation in relations:
                    if op == "create" and entity == "Account" and relation.startswith("member"):
                        continue  # a new record has no members yet
                    want = expected(engine, roles, entity, op, relation)
                    got = attempt(api, world, token, entity, op, relation)
                    checked += 1
                    if got != want:
                        who = "+".join(sorted(roles))
                        failures.append(f"{who} {op} {entity} ({relation}): {got}, want {want}")
    assert checked == len(ROLE_SETS) * (2 * 7 * 5 - 2 + 5)
    assert not failures, f"{len(failures)} of {checked} differ:\n" + "\n".join(failures)


def test_the_matrix_covers_every_scope_and_outcome(engine):
    declared = {
        engine.role_defs[role].scope(entity, op)
        for roles in ROLE_SETS
        for role in roles
        for entity in ENTITIES
        for op in ("read", "create", "update", "delete")
    }
    assert declared == {"none", "own", "team", "own_or_unowned", "all"}
    outcomes = {
        expected(engine, roles, entity, op, relation)
        for roles in ROLE_SETS
        for entity in ENTITIES
        for op in ("get", "create", "update", "delete")
        for relation in RELATIONS
    }
    assert outcomes == {"ok", "NotFound", "PermissionDenied", "ValidationError"}


# -- nested relations ------------------------------------------------------------------------
def visible(engine, roles: Iterable[str], entity: str = "Account") -> set[str]:
    return {rel for rel in RELATIONS if allowed(engine, set(roles), entity, "read", rel)}


def test_nested_relations_show_and_count_only_visible_records(engine, world, api):
    for relation in RELATIONS:
        engine.records.update("Account", world.accounts[relation], {"region": world.region})
    by_id = {gid(rid): rel for rel, rid in world.accounts.items()}
    note_of = {gid(world.notes[rel]): rel for rel in RELATIONS}
    failures = []
    for role in (*SHIPPED_ROLES, "team_lead", "pool_worker", "user_keeper"):
        token = sign_in(world, {role})
        want = visible(engine, {role})
        data = ok(
            api.gql(
                "query($r: ID!) {"
                " regions { nodes { accounts(first: 50) { totalCount nodes { id } } } }"
                " region(id: $r) { accounts(first: 1) { totalCount pageInfo { hasNextPage }"
                " nodes { id } } } }",
                {"r": gid(world.region)},
                token=token,
            )
        )
        if role == "user_keeper":  # reads no region at all
            assert data == {"regions": {"nodes": []}, "region": None}, data
            continue
        nested = data["regions"]["nodes"][0]["accounts"]
        got = {by_id.get(n["id"], n["id"]) for n in nested["nodes"]}
        if got != want or nested["totalCount"] != len(want):
            failures.append(f"{role}: Region.accounts {nested['totalCount']} {got}, want {want}")
        first = data["region"]["accounts"]
        if (first["totalCount"], len(first["nodes"]), first["pageInfo"]["hasNextPage"]) != (
            len(want),
            min(1, len(want)),
            len(want) > 1,
        ):
            failures.append(f"{role}: Region.accounts(first: 1) {first}, want {len(want)} in all")
        # the notes of each visible account: exactly its own note, owned through it
        notes = ok(
            api.gql(
                "{ accounts { totalCount nodes { id notes { totalCount nodes { id } } } } }",
                token=token,
            )
        )["accounts"]
        if notes["totalCount"] != len(want):
            failures.append(f"{role}: accounts totalCount {notes['totalCount']}, want {len(want)}")
        for node in notes["nodes"]:
            rel = by_id[node["id"]]
            got_notes = [note_of.get(n["id"], n["id"]) for n in node["notes"]["nodes"]]
            if node["notes"]["totalCount"] != 1 or got_notes != [rel]:
                failures.append(f"{role}: notes of the {rel} account: {node['notes']}")
        # the other way round: a visit (not owned) shows only the accounts the role reads
        visits = ok(api.gql("{ visits { nodes { subject account { id name } } } }", token=token))[
            "visits"
        ]["nodes"]
        for visit in visits:
            rel = visit["subject"].removeprefix("visit ")
            shown = visit["account"] is not None
            if shown != (rel in want):
                failures.append(f"{role}: the account of visit {rel} shown: {shown}")
        # users are readable by all, their owned accounts only as far as the role reaches
        users = ok(
            api.gql(
                "{ users { nodes { username ownedAccounts { totalCount nodes { id } } } } }",
                token=token,
            )
        )["users"]["nodes"]
        for user in users:
            owned = {
                rel
                for rel, owner in world.owners.items()
                if owner is not None and owner == world.users.get(user["username"])
            }
            want_owned = owned & want
            got_owned = {by_id.get(n["id"], n["id"]) for n in user["ownedAccounts"]["nodes"]}
            if got_owned != want_owned or user["ownedAccounts"]["totalCount"] != len(want_owned):
                failures.append(
                    f"{role}: {user['username']}.ownedAccounts {user['ownedAccounts']}, "
                    f"want {sorted(want_owned)}"
                )
    assert not failures, "\n".join(failures)


def test_a_nested_filter_on_deleted_records_is_for_admins_only(engine, world, api):
    for relation in RELATIONS:
        engine.records.update("Account", world.accounts[relation], {"region": world.region})
    engine.records.delete("Account", world.accounts["own"])
    engine.records.delete("Account", world.accounts["other_team"])
    token = sign_in(world, {"customer_manager"})
    top = api.gql("{ accounts(filter: {deleted: true}) { totalCount } }", token=token)
    assert code(top) == "FORBIDDEN", top
    nested = api.gql(
        "{ regions { nodes { accounts(filter: {deleted: true}) { totalCount nodes { id } } } } }",
        token=token,
    )
    assert "errors" in nested and code(nested) == "FORBIDDEN", nested
    admin = ok(
        api.gql("{ regions { nodes { accounts(filter: {deleted: true}) { totalCount } } } }")
    )
    assert admin["regions"]["nodes"][0]["accounts"]["totalCount"] == 2


# -- hidden fields ---------------------------------------------------------------------------
def test_a_hidden_field_reads_as_null_everywhere(engine, world, api):
    for relation in RELATIONS:
        engine.records.update("Account", world.accounts[relation], {"region": world.region})
    token = sign_in(world, {"auditor"})
    own = gid(world.accounts["own"])
    failures = []
    for where, query, variables in (
        ("account(id)", "query($id: ID!) { x: account(id: $id) { name revenue } }", {"id": own}),
        ("accounts", "{ x: accounts { nodes { name revenue } } }", None),
        ("accounts.edges", "{ x: accounts { edges { node { name revenue } } } }", None),
        (
            "Region.accounts",
            "{ x: regions { nodes { accounts { nodes { name revenue } } } } }",
            None,
        ),
        ("Visit.account", "{ x: visits { nodes { account { name revenue } } } }", None),
        ("AccountNote.account", "{ x: accountNotes { nodes { account { name revenue } } } }", None),
        (
            "User.ownedAccounts",
            "{ x: users { nodes { ownedAccounts { nodes { revenue } } } } }",
            None,
        ),
    ):
        result = api.gql(query, variables, token=token)
        if "errors" in result:
            failures.append(f"{where}: {result['errors']}")
            continue
        text = repr(result["data"])
        if "'revenue': None" not in text or "'revenue': '100" in text:
            failures.append(f"{where} shows the hidden field: {text[:300]}")
    assert not failures, "\n".join(failures)
    executive = sign_in(world, {"executive"}, user="mate")
    shown = ok(api.gql("query($id: ID!) { account(id: $id) { revenue } }", {"id": own}, executive))
    assert shown["account"]["revenue"] in ("100", "100.00")


def test_a_hidden_field_is_absent_from_the_roles_metadata(world, api):
    query = "{ metadata { entities { name fields { name } } } }"

    def account_fields(token: str) -> set[str]:
        entities = ok(api.gql(query, token=token))["metadata"]["entities"]
        return {f["name"] for e in entities if e["name"] == "Account" for f in e["fields"]}

    auditor = account_fields(sign_in(world, {"auditor"}))
    assert "revenue" not in auditor and {"name", "region", "owner"} <= auditor
    assert "revenue" in account_fields(sign_in(world, {"executive"}, user="mate"))
    # a role that does not hide it, added to one that does, shows it
    assert "revenue" in account_fields(sign_in(world, {"auditor", "executive"}, user="junior"))
    assert "revenue" in account_fields(api.token)  # the admin


def test_a_hidden_field_cannot_be_filtered_or_ordered_on(world, api):
    token = sign_in(world, {"auditor"})
    failures = []
    for query in (
        '{ accounts(filter: {revenue: {gt: "1"}}) { totalCount } }',
        "{ accounts(filter: {revenue: {isNull: true}}) { totalCount } }",
        '{ accounts(filter: {not: {revenue: {gt: "1"}}}) { totalCount } }',
        '{ accounts(filter: {or: [{name: {eq: "x"}}, {revenue: {gt: "1"}}]}) { totalCount } }',
        '{ visits(filter: {account: {revenue: {gt: "1"}}}) { totalCount } }',
        '{ accountNotes(filter: {account: {revenue: {lt: "1"}}}) { totalCount } }',
        "{ accounts(orderBy: [{revenue: DESC}]) { totalCount } }",
        '{ regions { nodes { accounts(filter: {revenue: {gt: "1"}}) { totalCount } } } }',
        "{ regions { nodes { accounts(orderBy: [{revenue: ASC}]) { totalCount } } } }",
    ):
        result = api.gql(query, token=token)
        if code(result) != "VALIDATION":
            failures.append(f"{query}: {result}")
    assert not failures, "\n".join(failures)
    # the same filter is fine for a role that sees the field
    executive = sign_in(world, {"executive"}, user="mate")
    result = ok(
        api.gql('{ accounts(filter: {revenue: {gt: "1"}}) { totalCount } }', None, executive)
    )
    assert result["accounts"]["totalCount"] == len(RELATIONS)


def test_a_hidden_field_cannot_be_written(engine, world, api):
    token = sign_in(world, {"quiet_manager"})
    own = gid(world.accounts["own"])
    before = snapshot(world, "Account", world.accounts["own"])
    refused = api.gql(
        'mutation($id: ID!) { updateAccount(id: $id, input: {revenue: "5"}) { id } }',
        {"id": own},
        token=token,
    )
    assert code(refused) == "FORBIDDEN", refused
    assert "revenue" in refused["errors"][0]["message"]
    created = api.gql(
        'mutation { createAccount(input: {name: "Q", revenue: "5"}) { id } }', token=token
    )
    assert code(created) == "FORBIDDEN", created
    assert snapshot(world, "Account", world.accounts["own"]) == before
    assert live_count(world, "Account") == len(RELATIONS)
    renamed = ok(
        api.gql(
            'mutation($id: ID!) { updateAccount(id: $id, input: {name: "Quiet"})'
            " { name revenue } }",
            {"id": own},
            token=token,
        )
    )
    assert renamed["updateAccount"] == {"name": "Quiet", "revenue": None}


# -- workflows -------------------------------------------------------------------------------
def shared_accounts(engine, world: World) -> dict[str, int]:
    """A fresh account per relation to "me" (with its members), made by the system."""
    made = {}
    for relation in RELATIONS:
        made[relation] = engine.records.create(
            "Account", {"name": f"{relation} flow", "owner": world.owners[relation]}
        ).id
    add_member(engine, "Account", made["member_read"], world.users["me"], "read")
    add_member(engine, "Account", made["member_edit"], world.users["me"], "edit")
    return made


def test_fire_transition_needs_update_scope_for_every_role(build):
    engine = build(workflow=True)
    world = World(engine)
    failures = []
    fire = (
        'mutation($id: ID!) { fireTransition(entity: "Account", id: $id, trigger: "close")'
        " { state previousState event { trigger actor { username } } } }"
    )
    with graphql_client(engine) as api:
        for roles in ROLE_SETS:
            token = sign_in(world, roles)
            accounts = shared_accounts(engine, world)
            for relation, rid in accounts.items():
                readable = allowed(engine, roles, "Account", "read", relation)
                may = allowed(engine, roles, "Account", "update", relation)
                want = "ok" if may else ("PermissionDenied" if readable else "NotFound")
                result = api.gql(fire, {"id": gid(rid)}, token=token)
                got = answer(result)
                stage = engine.records.get("Account", rid).stage
                if got == "ok":
                    event = result["data"]["fireTransition"]
                    if event != {
                        "state": "closed",
                        "previousState": "prospect",
                        "event": {"trigger": "close", "actor": {"username": "me"}},
                    }:
                        got = f"ok but {event}"
                if (stage == "closed") != (got == "ok"):
                    got = f"{got} with the stage {stage}"
                if got != want:
                    failures.append(f"{'+'.join(sorted(roles))} close ({relation}): {got}, {want}")
    assert not failures, "\n".join(failures)


def test_available_transitions_and_history_follow_the_scope(build):
    engine = build(workflow=True)
    world = World(engine)
    query = (
        "query($id: ID!) { account(id: $id) { stage availableTransitions { trigger allowed"
        " reasons } history { trigger fromState toState actor { username } } } }"
    )
    with graphql_client(engine) as api:
        token = sign_in(world, {"customer_manager"})
        read_only = ok(api.gql(query, {"id": gid(world.accounts["member_read"])}, token=token))
        triggers = read_only["account"]["availableTransitions"]
        assert [t["trigger"] for t in triggers] == ["activate", "close"]
        assert all(not t["allowed"] and t["reasons"] for t in triggers), triggers
        own = gid(world.accounts["own"])
        fired = api.gql(
            'mutation($id: ID!) { fireTransition(entity: "Account", id: $id, trigger: "activate")'
            " { state } }",
            {"id": own},
            token=token,
        )
        assert ok(fired)["fireTransition"]["state"] == "active"
        mine = ok(api.gql(query, {"id": own}, token=token))["account"]
        assert mine["stage"] == "active"
        assert [t["trigger"] for t in mine["availableTransitions"] if t["allowed"]] == ["close"]
        assert mine["history"][-1] == {
            "trigger": "activate",
            "fromState": "prospect",
            "toState": "active",
            "actor": {"username": "me"},
        }
        # another team's record: no history, no transitions, nothing at all
        hidden = api.gql(query, {"id": gid(world.accounts["other_team"])}, token=token)
        assert ok(hidden) == {"account": None}


# -- users -----------------------------------------------------------------------------------
UPDATE_USER = (
    "mutation($id: ID!, $input: UserUpdateInput!) { updateUser(id: $id, input: $input)"
    " { id roles teamId active displayName } }"
)


def test_only_admins_change_a_users_roles_team_and_status(engine, world, api):
    me = gid(world.users["me"])
    mate = gid(world.users["mate"])
    for roles in ({"customer_manager"}, {"user_keeper"}, {"executive", "sales_supervisor"}):
        token = sign_in(world, roles)
        before = snapshot(world, "User", world.users["me"])
        for change in (
            {"roles": ["admin"]},
            {"teamId": gid(world.teams["west"])},
            {"active": False},
        ):
            result = api.gql(UPDATE_USER, {"id": me, "input": change}, token=token)
            assert code(result) == "FORBIDDEN", (roles, change, result)
            refused = api.gql(UPDATE_USER, {"id": mate, "input": change}, token=token)
            assert code(refused) == "FORBIDDEN", (roles, change, refused)
        assert snapshot(world, "User", world.users["me"]) == before
        # still signed in: nothing that ends a token changed
        assert ok(api.gql("{ me { roles } }", token=token))["me"]["roles"] == sorted(roles)
        # their own display name is theirs to write; another user's is not
        named = api.gql(UPDATE_USER, {"id": me, "input": {"displayName": "Me"}}, token=token)
        assert ok(named)["updateUser"]["displayName"] == "Me"
        other = api.gql(UPDATE_USER, {"id": mate, "input": {"displayName": "X"}}, token=token)
        assert code(other) == "FORBIDDEN", other
        for mutation in (
            'mutation { createUser(input: {username: "sneaky", roles: ["admin"]}) { id } }',
            'mutation { createTeam(input: {name: "South"}) { id } }',
            f"mutation {{ deleteUser(id: {mate}) }}",
        ):
            assert code(api.gql(mutation, token=token)) == "FORBIDDEN", (roles, mutation)
    assert engine.records.list("User", filter={"username": {"eq": "sneaky"}}).total_count == 0
    assert engine.records.list("Team").total_count == 3
    # an admin may, and the changed user's tokens end with the change
    mate_token = sign_in(world, {"customer_manager"}, user="mate")
    changed = api.gql(
        UPDATE_USER,
        {"id": mate, "input": {"roles": ["finance"], "teamId": gid(world.teams["west"])}},
    )
    assert ok(changed)["updateUser"]["roles"] == ["finance"]
    assert ok(changed)["updateUser"]["teamId"] == gid(world.teams["west"])
    assert code(api.gql("{ me { id } }", token=mate_token)) == "UNAUTHENTICATED"
    unknown = api.gql(UPDATE_USER, {"id": mate, "input": {"roles": ["pope"]}})
    assert code(unknown) == "VALIDATION", unknown


def test_users_are_listed_without_secrets(world, api):
    token = sign_in(world, {"customer_manager"})
    users = ok(api.gql("{ users { totalCount nodes { id username } } }", token=token))["users"]
    assert users["totalCount"] == 5  # the four of the world and the admin
    for field in ("passwordHash", "password", "token", "tokenHash"):
        result = api.gql(f"{{ users {{ nodes {{ {field} }} }} }}", token=token)
        assert code(result) == "VALIDATION", result
        assert code(api.gql(f"{{ users {{ nodes {{ {field} }} }} }}")) == "VALIDATION"


REVALUE_FLOW = """\
workflow: account_flow
entity: Account
field: stage
initial: prospect
states:
  prospect: {label: Prospect}
  active: {label: Active, final: true}
transitions:
  - trigger: revalue
    source: prospect
    dest: active
    payload: {revenue: {type: decimal}, reason: {type: string}}
    actions: [{action: set, fields: {revenue: payload.revenue}}]
"""


def test_a_hidden_field_is_absent_from_history_payloads(make_engine, home, test_plugin):
    (home / "roles.yaml").write_text(ROLES_YAML, encoding="utf-8")
    (home / "workflows" / "account_flow.yaml").write_text(REVALUE_FLOW, encoding="utf-8")
    engine = make_engine(test_plugin("scoped"), use_entry_points=True, plugins=("sales", "scoped"))
    world = World(engine)
    own = gid(world.accounts["own"])
    query = "query($id: ID!) { account(id: $id) { revenue history { trigger payload } } }"
    with graphql_client(engine) as api:
        fired = api.gql(
            'mutation($id: ID!) { fireTransition(entity: "Account", id: $id, trigger: "revalue",'
            ' payload: {revenue: "250", reason: "grew"}) { state } }',
            {"id": own},
        )
        assert ok(fired)["fireTransition"]["state"] == "active"
        executive = ok(api.gql(query, {"id": own}, token=sign_in(world, {"executive"}, "mate")))
        payload = executive["account"]["history"][-1]["payload"]
        assert float(payload["revenue"]) == 250 and payload["reason"] == "grew"
        auditor = ok(api.gql(query, {"id": own}, token=sign_in(world, {"auditor"})))["account"]
        # (revenue itself reading as null is test_a_hidden_field_reads_as_null_everywhere's)
        assert auditor["history"][-1]["payload"] == {"reason": "grew"}, auditor["history"]
