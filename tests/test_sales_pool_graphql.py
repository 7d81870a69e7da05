"""The shared pool and hand-over through GraphQL, with real tokens of each role.

Masking holds wherever a pool record is read - a customer by id, a list, a nested
connection of contacts, a contact's customer - until the customer is claimed; the
mutations answer with the codes of the engine's errors; ``lookupCustomer`` answers every
role with the owner and team only.
"""

from __future__ import annotations

import pytest

from .graphql_client import code, graphql_client

PEOPLE = {
    "li": ("customer_manager", "East"),
    "wang": ("customer_manager", "East"),
    "zhao": ("customer_manager", "West"),
    "chen": ("sales_supervisor", "East"),
    "cai": ("finance", None),
    "gao": ("executive", None),
}
CUSTOMER = "id name phone owner { username } contacts { nodes { name mobile email } }"


@pytest.fixture
def world(make_engine, clock):
    engine = make_engine(
        use_entry_points=True,
        plugins=("sales",),
        clock=clock,
        settings={"GUANXI_SALES_CLAIM_CAP": "1"},
    )
    with graphql_client(engine) as api:
        for team in ("East", "West"):
            engine.records.create("Team", {"name": team})
        ids, tokens = {}, {"root": api.token}
        for name, (role, team) in PEOPLE.items():
            ids[name] = engine.auth.create_user(name, roles=[role], team=team).id
            tokens[name] = engine.auth.issue_token(ids[name]).token
        customer = engine.records.create(
            "Customer", {"name": "Pool Liquor", "phone": "13800138000"}
        )
        engine.records.create(
            "Contact",
            {
                "customer": customer.id,
                "name": "Zhang Wei",
                "mobile": "13912345678",
                "email": "zw@pool.cn",
            },
        )
        yield api, engine, ids, tokens, customer.id


def ok(result):
    assert "errors" not in result, result["errors"]
    return result["data"]


def as_(api, tokens, who, query, variables=None):
    return api.gql(query, variables, token=tokens[who])


def test_a_customer_manager_sees_pool_contact_details_masked_everywhere_until_claiming(world):
    api, engine, ids, tokens, cid = world
    masked = {
        "id": str(cid),
        "name": "Pool Liquor",
        "phone": "138****8000",
        "owner": None,
        "contacts": {
            "nodes": [{"name": "Zhang Wei", "mobile": "139****5678", "email": "z***@pool.cn"}]
        },
    }
    got = ok(
        as_(
            api,
            tokens,
            "li",
            f"query($id: ID!) {{ customer(id: $id) {{ {CUSTOMER} }} }}",
            {"id": cid},
        )
    )
    assert got["customer"] == masked
    listed = ok(as_(api, tokens, "li", f"{{ customers {{ nodes {{ {CUSTOMER} }} }} }}"))
    assert listed["customers"]["nodes"] == [masked]
    via_contact = ok(as_(api, tokens, "li", "{ contacts { nodes { mobile customer { phone } } } }"))
    assert via_contact["contacts"]["nodes"] == [
        {"mobile": "139****5678", "customer": {"phone": "138****8000"}}
    ]
    claimed = ok(
        as_(
            api,
            tokens,
            "li",
            f"mutation($id: ID!) {{ claimCustomer(id: $id) {{ {CUSTOMER} }} }}",
            {"id": cid},
        )
    )["claimCustomer"]
    assert claimed == {
        **masked,
        "phone": "13800138000",
        "owner": {"username": "li"},
        "contacts": {
            "nodes": [{"name": "Zhang Wei", "mobile": "13912345678", "email": "zw@pool.cn"}]
        },
    }


@pytest.mark.parametrize("who", ["cai", "gao", "root"])
def test_finance_executives_and_admins_see_pool_details(world, who):
    api, engine, ids, tokens, cid = world
    got = ok(as_(api, tokens, who, f"{{ customers {{ nodes {{ {CUSTOMER} }} }} }}"))
    (node,) = got["customers"]["nodes"]
    assert (node["phone"], node["contacts"]["nodes"][0]["mobile"]) == ("13800138000", "13912345678")


def test_a_customer_manager_cannot_filter_contacts_on_a_masked_field(world):
    api, engine, ids, tokens, cid = world
    result = as_(
        api, tokens, "li", '{ contacts(filter: {mobile: {eq: "13912345678"}}) { totalCount } }'
    )
    assert code(result) == "VALIDATION"
    nested = as_(
        api,
        tokens,
        "li",
        "{ customers { nodes { contacts(orderBy: [{email: ASC}]) { totalCount } } } }",
    )
    assert code(nested) == "VALIDATION"


def test_claiming_a_customer_someone_owns_is_a_conflict_and_the_cap_a_limit(world):
    api, engine, ids, tokens, cid = world
    claim = "mutation($id: ID!) { claimCustomer(id: $id) { id } }"
    ok(as_(api, tokens, "li", claim, {"id": cid}))
    assert code(as_(api, tokens, "wang", claim, {"id": cid})) == "CONFLICT"
    other = engine.records.create("Customer", {"name": "Second Pool"})
    assert code(as_(api, tokens, "li", claim, {"id": other.id})) == "LIMIT_EXCEEDED"
    assert code(as_(api, tokens, "cai", claim, {"id": other.id})) == "FORBIDDEN"


def test_releasing_needs_a_reason_and_puts_the_customer_back(world):
    api, engine, ids, tokens, cid = world
    ok(as_(api, tokens, "li", "mutation($id: ID!) { claimCustomer(id: $id) { id } }", {"id": cid}))
    release = (
        "mutation($id: ID!, $r: String!) { releaseCustomer(id: $id, reason: $r) "
        "{ phone owner { username } } }"
    )
    refused = as_(api, tokens, "li", release, {"id": cid, "r": ""})
    assert code(refused) == "VALIDATION"
    assert refused["errors"][0]["extensions"]["field"] == "reason"
    released = ok(as_(api, tokens, "li", release, {"id": cid, "r": "no budget this year"}))
    assert released["releaseCustomer"] == {"phone": "138****8000", "owner": None}


def test_a_supervisor_transfers_customers_and_everything_of_a_user(world):
    api, engine, ids, tokens, cid = world
    ok(as_(api, tokens, "li", "mutation($id: ID!) { claimCustomer(id: $id) { id } }", {"id": cid}))
    deal = engine.records.create(
        "Opportunity", {"title": "ads", "customer": cid, "owner": ids["li"]}
    )
    moved = ok(
        as_(
            api,
            tokens,
            "chen",
            "mutation($ids: [ID!]!, $to: ID!) { transferCustomers(ids: $ids, toUserId: $to) "
            "{ customers opportunities contracts tasks } }",
            {"ids": [cid], "to": ids["wang"]},
        )
    )["transferCustomers"]
    assert moved == {
        "customers": [str(cid)],
        "opportunities": [str(deal.id)],
        "contracts": [],
        "tasks": [],
    }
    back = ok(
        as_(
            api,
            tokens,
            "chen",
            "mutation($from: ID!, $to: ID!) { transferAll(fromUserId: $from, toUserId: $to) "
            "{ customers opportunities } }",
            {"from": ids["wang"], "to": ids["li"]},
        )
    )["transferAll"]
    assert back == {"customers": [str(cid)], "opportunities": [str(deal.id)]}
    refused = as_(
        api,
        tokens,
        "chen",
        "mutation($ids: [ID!]!, $to: ID!) { transferCustomers(ids: $ids, toUserId: $to) "
        "{ customers } }",
        {"ids": [cid], "to": ids["zhao"]},
    )
    assert (code(refused), refused["errors"][0]["extensions"]["field"]) == (
        "VALIDATION",
        "toUserId",
    )


def test_deactivating_a_user_who_owns_customers_is_refused_naming_transfer_all(world):
    api, engine, ids, tokens, cid = world
    ok(as_(api, tokens, "li", "mutation($id: ID!) { claimCustomer(id: $id) { id } }", {"id": cid}))
    deactivate = "mutation($id: ID!) { updateUser(id: $id, input: {active: false}) { active } }"
    refused = api.gql(deactivate, {"id": ids["li"]})
    assert code(refused) == "VALIDATION"
    assert refused["errors"][0]["extensions"]["field"] == "active"
    assert "transferAll" in refused["errors"][0]["message"]
    ok(
        api.gql(
            "mutation($from: ID!, $to: ID!) { transferAll(fromUserId: $from, toUserId: $to) "
            "{ customers } }",
            {"from": ids["li"], "to": ids["wang"]},
        )
    )
    assert ok(api.gql(deactivate, {"id": ids["li"]}))["updateUser"] == {"active": False}


@pytest.mark.parametrize("who", [*PEOPLE, "root"])
def test_every_role_looks_a_customer_up_and_learns_only_who_works_it(world, who):
    api, engine, ids, tokens, cid = world
    engine.records.create(
        "Customer", {"name": "成都XX酒业有限公司", "owner": ids["zhao"], "phone": "028-8765 4321"}
    )
    found = ok(
        as_(
            api,
            tokens,
            who,
            "query($n: String, $p: String) { lookupCustomer(name: $n, phone: $p) "
            "{ name owner team inPool matchedKeys } }",
            {"n": "成都ＸＸ酒业", "p": "13800138000"},
        )
    )["lookupCustomer"]
    assert found == [
        {
            "name": "Pool Liquor",
            "owner": None,
            "team": None,
            "inPool": True,
            "matchedKeys": ["phone"],
        },
        {
            "name": "成都XX酒业有限公司",
            "owner": "zhao",
            "team": "West",
            "inPool": False,
            "matchedKeys": ["name"],
        },
    ]
