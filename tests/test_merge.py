"""Merging duplicate records (engine/merge.py) and the duplicate groups it starts from.

The world: the sales plugin plus an admin's entities file (a ``Visit`` of a customer, a
``Supplier`` with a unique tax number, a ``Licence`` whose duplicate key is its holder
customer, and a ``payer`` ref added to ``Payment``). Two
customer managers of team East each own one spelling of the demo's duplicate pair -
li "XX酒业有限公司" (the survivor, A) and wang "XX酒业" (B) - with contacts, opportunities
in different stages, a contract, orders, payments, activities, a task, a branch and a
visit; zhao (team West) owns an unrelated customer D and shares B for reading.
"""

from __future__ import annotations

import re
import threading
from datetime import date, timedelta
from typing import Any

import pytest
from pony.orm import db_session

from guanxi.engine import (
    FieldProblem,
    NotFound,
    PermissionDenied,
    ValidationError,
    hookimpl,
)
from guanxi.engine.merge import MAX_OTHERS, duplicate_groups, merge
from guanxi.engine.permissions import add_member
from guanxi.plugins import sales

from .conftest import T0

ADMIN_ENTITIES = """\
entities:
  - name: Visit
    owner_via: customer
    fields:
      customer: {type: ref, to: Customer, reverse: visits, required: true}
      note: {type: string}
  - name: Supplier
    natural_key: tax_no
    duplicate_keys: [name]
    fields:
      name: {type: string, required: true}
      tax_no: {type: string, unique: true}
      city: {type: string}
  - name: Licence
    duplicate_keys: [holder]
    fields:
      holder: {type: ref, to: Customer, reverse: licences}
      number: {type: string}
extend:
  Payment:
    payer: {type: ref, to: Customer, reverse: paid_payments}
"""
#: A supervisor who may also delete (so merge) customers of their team; an auditor who
#: reads everything but customers' phones.
ROLES = """\
roles:
  sales_supervisor:
    default: {read: team, create: team, update: team, delete: none}
    entities:
      Customer: {delete: team}
  auditor:
    default: {read: all}
    hidden_fields:
      Customer: [phone]
"""


@pytest.fixture
def build(make_engine, home, clock):
    def build(*plugins: Any, roles: bool = False):
        (home / "entities" / "admin.yaml").write_text(ADMIN_ENTITIES, encoding="utf-8")
        if roles:
            (home / "roles.yaml").write_text(ROLES, encoding="utf-8")
        return make_engine(sales, *plugins, clock=clock)

    return build


class World:
    """The duplicate pair A/B and everything around them (see the module text)."""

    def __init__(self, engine, clock) -> None:
        self.engine, self.clock = engine, clock
        records = engine.records
        records.create("Team", {"name": "East"})
        records.create("Team", {"name": "West"})
        people = {
            "root": ("admin", None),
            "li": ("customer_manager", "East"),
            "wang": ("customer_manager", "East"),
            "zhao": ("customer_manager", "West"),
            "chen": ("sales_supervisor", "East"),
            "qian": ("executive", None),
            "sun": ("auditor", None),
        }
        self.ids: dict[str, int] = {}
        self.actors: dict[str, Any] = {}
        for name, (role, team) in people.items():
            if role not in engine.role_defs:
                continue
            self.ids[name] = engine.auth.create_user(name, roles=[role], team=team).id
            self.actors[name] = engine.auth.actor_for(self.ids[name])
        li, wang, zhao = self.actors["li"], self.actors["wang"], self.actors["zhao"]
        self.root = self.actors["root"]
        self.parent = records.create("Customer", {"name": "XX集团"}, actor=wang)
        self.a = records.create(
            "Customer",
            {"name": "XX酒业有限公司", "website": "https://a.example", "region": "四川"},
            actor=li,
        )
        self.b = records.create(
            "Customer",
            {
                "name": "XX酒业",
                "phone": "028-8888 6666",
                "industry": "酒类",
                "website": "https://b.example",
                "notes": "展会认识",
                "parent": self.parent.id,
            },
            actor=wang,
            allow_duplicate=True,
        )
        self.d = records.create("Customer", {"name": "Chengdu Tea"}, actor=zhao)
        A, B, D = self.a.id, self.b.id, self.d.id
        # contacts, one of B's already in the recycle bin
        self.contact_a = records.create("Contact", {"customer": A, "name": "Li Na"}, actor=li)
        self.contacts_b = [
            records.create("Contact", {"customer": B, "name": n}, actor=wang)
            for n in ("Zhang Wei", "Wang Fang", "Old Contact")
        ]
        records.delete("Contact", self.contacts_b[2].id, actor=wang)
        records.create("Contact", {"customer": D, "name": "Chen Jie"}, actor=zhao)
        # opportunities: A's a lead; B's at visit, at contract (signed), and lost
        self.opp_a = self.opportunity(A, li)
        self.opps_b = [self.opportunity(B, wang) for _ in range(3)]
        self.fire(self.opps_b[0], "schedule_visit", wang)
        self.fire(self.opps_b[1], "schedule_visit", wang)
        records.update(
            "Opportunity",
            self.opps_b[1].id,
            {
                "amount": "36000",
                "expected_close_date": "2027-04-30",
                "contact": self.contacts_b[0].id,
            },
            actor=wang,
        )
        self.fire(self.opps_b[1], "propose", wang)
        self.fire(self.opps_b[1], "sign", wang)
        self.fire(self.opps_b[2], "lose", wang, reason="price")
        self.opportunity(D, zhao)
        # orders, payments (one of D's paid by B: the admin's `payer` field)
        self.order_a = self.order(A, li)
        self.orders_b = [self.order(B, wang), self.order(B, wang)]
        self.payment_b = self.payment(B, wang, order=self.orders_b[0].id)
        self.payment_d = self.payment(D, self.root, payer=B)
        # activities: A's first, B's a day later (with a follow-up), one of D's
        self.activity_a = self.activity(A, li)
        clock.advance(days=1)
        self.activity_b = self.activity(
            B,
            wang,
            opportunity=self.opps_b[0].id,
            contact=self.contacts_b[0].id,
            next_follow_up_at=T0 + timedelta(days=8),
        )
        self.activity(D, zhao)
        self.task_b = records.create("Task", {"title": "Send samples", "customer": B}, actor=wang)
        self.branch = records.create(
            "Customer", {"name": "XX酒业成都分公司", "parent": B}, actor=wang
        )
        self.visit_b = records.create("Visit", {"customer": B, "note": "tasting"})
        records.create("Visit", {"customer": D})
        add_member(engine, "Customer", B, self.ids["zhao"], "read", actor=wang)
        clock.advance(hours=1)

    def opportunity(self, customer: int, actor: Any) -> Any:
        data = {"title": "2027 subscriptions", "customer": customer}
        return self.engine.records.create("Opportunity", data, actor=actor)

    def fire(self, record: Any, trigger: str, actor: Any, **payload: Any) -> None:
        self.engine.runtime.fire_transition(
            "Opportunity", record.id, trigger, actor, payload=payload
        )

    def order(self, customer: int, actor: Any) -> Any:
        data = {"customer": customer, "ordered_on": date(2027, 2, 1), "amount": "1200"}
        return self.engine.records.create("Order", data, actor=actor)

    def payment(self, customer: int, actor: Any, **refs: Any) -> Any:
        data = {"customer": customer, "amount": "600", "paid_on": date(2027, 2, 2), **refs}
        return self.engine.records.create("Payment", data, actor=actor)

    def activity(self, customer: int, actor: Any, **values: Any) -> Any:
        data = {"customer": customer, "kind": "visit", "subject": "tasting", **values}
        return self.engine.records.create("Activity", data, actor=actor)

    def merge(self, actor: str = "root", others: list[int] | None = None) -> Any:
        others = [self.b.id] if others is None else others
        return merge(self.engine, "Customer", self.a.id, others, self.actors[actor])

    #: (entity, id, ref field) of every record that referred to B
    def referrers_of_b(self) -> set[tuple[str, int, str]]:
        contract = self.engine.records.list(
            "Contract", filter={"opportunity": {"id": {"eq": self.opps_b[1].id}}}
        ).records[0]
        found = {("Contact", c.id, "customer") for c in self.contacts_b}
        found |= {("Opportunity", o.id, "customer") for o in self.opps_b}
        found |= {("Order", o.id, "customer") for o in self.orders_b}
        found |= {
            ("Contract", contract.id, "customer"),
            ("Payment", self.payment_b.id, "customer"),
            ("Payment", self.payment_d.id, "payer"),
            ("Activity", self.activity_b.id, "customer"),
            ("Task", self.task_b.id, "customer"),
            ("Customer", self.branch.id, "parent"),
            ("Visit", self.visit_b.id, "customer"),
        }
        return found


@pytest.fixture
def world(build, clock):
    return World(build(roles=True), clock)


def snapshot(engine) -> dict[Any, Any]:
    """Every record of every entity (recycle bin included), workflow event, timer, member
    and audit event, as plain values."""
    out: dict[Any, Any] = {}
    classes = engine.classes
    with db_session:
        for spec in engine.registry:
            for obj in classes[spec.name].select():
                out[(spec.name, obj.id)] = engine.records._values(spec, obj)
        for e in classes["GxWorkflowEvent"].select():
            out[("event", e.id)] = (e.entity, e.record_id, e.from_state, e.to_state, e.at)
        for t in classes["GxTimer"].select():
            out[("timer", t.id)] = (t.entity, t.record_id, t.state, t.status, t.due_at)
        for m in classes["GxMember"].select():
            out[("member", m.entity, m.record_id, m.user_id)] = m.access
        out["audit"] = classes["GxAudit"].select().count()
    return out


def changed_fields(before: dict, after: dict) -> dict[Any, set[str]]:
    assert set(before) - {"audit"} <= set(after)
    return {
        key: {name for name in after[key] if after[key][name] != before[key].get(name)}
        for key in before
        if key != "audit" and isinstance(after[key], dict) and after[key] != before[key]
    }


# -- what a merge does ------------------------------------------------------------------------
def test_every_record_that_referred_to_the_other_now_refers_to_the_survivor(world):
    world.merge()
    records = world.engine.records
    for entity, rid, field in world.referrers_of_b():
        deleted = (entity, rid) == ("Contact", world.contacts_b[2].id)
        assert records.get(entity, rid, deleted=deleted)[field] == world.a.id, (entity, rid)
    assert records.list("Contact", filter={"customer": {"id": {"eq": world.b.id}}}).records == ()


def test_nothing_but_the_refs_the_pair_and_the_survivors_roll_ups_changes(world):
    before = snapshot(world.engine)
    world.merge()
    after = snapshot(world.engine)
    assert set(after) - {"audit"} == set(before) - {"audit"} | {
        ("member", "Customer", world.a.id, world.ids["wang"]),
        ("member", "Customer", world.a.id, world.ids["zhao"]),
    }
    expected = {
        (entity, rid): {field, "version", "updated_at"}
        for entity, rid, field in world.referrers_of_b()
    }
    expected[("Customer", world.a.id)] = {
        "phone",
        "industry",
        "parent",
        "notes",
        "last_activity_at",
        "next_follow_up_at",
        "version",
        "updated_at",
    }
    expected[("Customer", world.b.id)] = {"deleted_at", "version"}
    assert changed_fields(before, after) == expected
    for entity, rid, _field in world.referrers_of_b():
        assert after[(entity, rid)]["version"] == before[(entity, rid)]["version"] + 1


def test_the_survivors_empty_fields_are_filled_and_its_own_values_kept(world):
    survivor = world.merge().survivor
    assert (survivor.phone, survivor.industry, survivor.notes) == (
        "028-8888 6666",
        "酒类",
        "展会认识",
    )
    assert (survivor.name, survivor.website, survivor.region) == (
        "XX酒业有限公司",
        "https://a.example",
        "四川",
    )
    assert (survivor.owner, survivor.code) == (world.ids["li"], world.a.code)


def test_the_survivor_takes_its_parent_from_the_first_other_that_has_one(world):
    assert world.merge().survivor.parent == world.parent.id


def test_empty_fields_are_filled_from_the_first_other_that_has_a_value(world):
    records, wang = world.engine.records, world.actors["wang"]
    c = records.create(
        "Customer",
        {"name": "XX 酒业(中国)", "industry": "白酒", "address": "成都"},
        actor=wang,
        allow_duplicate=True,
    )
    survivor = world.merge(others=[c.id, world.b.id]).survivor
    assert (survivor.industry, survivor.address, survivor.phone) == (
        "白酒",
        "成都",
        "028-8888 6666",
    )


def test_a_survivor_pointing_at_an_other_takes_that_others_ref_instead(world):
    records = world.engine.records
    records.update("Customer", world.a.id, {"parent": world.b.id})
    assert world.merge().survivor.parent == world.parent.id


def test_unique_values_stay_with_the_merged_record_and_it_restores(build):
    engine = build()
    records = engine.records
    survivor = records.create("Supplier", {"name": "Acme Co., Ltd."})
    other = records.create(
        "Supplier", {"name": "ACME", "tax_no": "91510100", "city": "Chengdu"}, allow_duplicate=True
    )
    merged = merge(engine, "Supplier", survivor.id, [other.id])
    assert merged.filled == ("city",)
    assert (merged.survivor.tax_no, merged.survivor.city) == (None, "Chengdu")
    assert records.restore("Supplier", other.id).tax_no == "91510100"


def test_the_other_is_soft_deleted_and_restores_as_it_was(world):
    records = world.engine.records
    before = records.get("Customer", world.b.id)
    world.merge()
    with pytest.raises(NotFound):
        records.get("Customer", world.b.id)
    assert records.get("Customer", world.b.id, deleted=True).deleted_at == world.clock.now
    restored = records.restore("Customer", world.b.id)
    unchanged = {k: v for k, v in restored.items() if k not in ("version", "updated_at")}
    assert unchanged == {k: v for k, v in before.items() if k not in ("version", "updated_at")}


def test_the_survivor_rolls_up_the_merged_activities(world):
    survivor = world.merge().survivor
    assert survivor.last_activity_at == world.activity_b.at
    assert survivor.next_follow_up_at == T0 + timedelta(days=8)


def test_workflow_history_and_stages_stay_with_their_records(world):
    runtime = world.engine.runtime

    def history() -> dict[int, list]:
        return {
            o.id: [(e["from_state"], e["to_state"]) for e in runtime.history("Opportunity", o.id)]
            for o in world.opps_b
        }

    before = history()
    world.merge()
    assert history() == before
    assert before[world.opps_b[1].id][-1] == ("proposal", "contract")
    stages = [world.engine.records.get("Opportunity", o.id).stage for o in world.opps_b]
    assert stages == ["visit", "contract", "lost"]


def test_the_others_members_and_owner_share_the_survivor(world):
    from guanxi.engine.permissions import members

    result = world.merge()
    shared = {(m.user_id, m.access) for m in members(world.engine, "Customer", world.a.id)}
    assert shared == {(world.ids["wang"], "edit"), (world.ids["zhao"], "read")}
    assert set(result.members) == shared
    # wang keeps working the customer his contacts and opportunities now belong to
    assert world.engine.records.get("Customer", world.a.id, actor=world.actors["wang"]).id


def test_a_member_keeps_the_higher_access(world):
    from guanxi.engine.permissions import members

    add_member(world.engine, "Customer", world.a.id, world.ids["wang"], "read")
    add_member(world.engine, "Customer", world.a.id, world.ids["zhao"], "edit")
    world.merge()
    shared = {(m.user_id, m.access) for m in members(world.engine, "Customer", world.a.id)}
    assert shared == {(world.ids["wang"], "edit"), (world.ids["zhao"], "edit")}


def test_the_merge_is_audited_on_the_survivor_the_other_and_every_moved_record(world):
    records = world.engine.records
    result = world.merge()
    survivor = records.audit_trail("Customer", world.a.id)[-1]
    assert (survivor["action"], survivor["actor"]) == ("merge", "root")
    changes = survivor["changes"]
    assert changes["merged_ids"] == [world.b.id]
    assert changes["merged_names"] == {str(world.b.id): "XX酒业"}
    assert changes["filled"] == ["industry", "phone", "parent", "notes"]
    assert {(r["entity"], r["field"], r["count"]) for r in changes["repointed"]} == {
        (r.entity, r.field, r.count) for r in result.repointed
    }
    assert changes["summary"].startswith(f'Merged Customer #{world.b.id} "XX酒业" into this record')
    other = records.audit_trail("Customer", world.b.id)
    assert [e["action"] for e in other[-2:]] == ["merge", "delete"]
    assert other[-2]["changes"]["merged_into"] == world.a.id
    for entity, rid, field in world.referrers_of_b():
        last = records.audit_trail(entity, rid)[-1]
        assert (last["action"], last["actor"]) == ("merge", "root")
        assert last["changes"] == {field: [world.b.id, world.a.id]}


def test_the_result_counts_the_moved_records_per_field(world):
    result = world.merge()
    counts = {(r.entity, r.field): r.count for r in result.repointed}
    assert counts == {
        ("Customer", "parent"): 1,
        ("Contact", "customer"): 3,
        ("Opportunity", "customer"): 3,
        ("Contract", "customer"): 1,
        ("Order", "customer"): 2,
        ("Payment", "customer"): 1,
        ("Payment", "payer"): 1,
        ("Activity", "customer"): 1,
        ("Task", "customer"): 1,
        ("Visit", "customer"): 1,
    }
    assert result.merged_ids == (world.b.id,)


def test_duplicate_keys_follow_the_merge(world):
    engine = world.engine
    world.merge()
    found = engine.duplicates.candidates("Customer", {"phone": "+86 28 8888 6666"})
    assert [c.record_id for c in found] == [world.a.id]
    assert duplicate_groups(engine, "Customer") == []


def test_duplicate_keys_made_of_a_moved_ref_follow_it(world):
    licence = world.engine.records.create("Licence", {"holder": world.b.id, "number": "L-1"})
    assert world.engine.duplicates.candidates("Licence", {"holder": world.a.id}) == []
    world.merge()
    found = world.engine.duplicates.candidates("Licence", {"holder": world.a.id})
    assert [c.record_id for c in found] == [licence.id]


def test_engine_merge_returns_the_survivor(world):
    survivor = world.engine.merge("Customer", world.a.id, [world.b.id], actor=world.root)
    assert survivor == world.engine.records.get("Customer", world.a.id)


# -- refusals: a clear error, and nothing changed -----------------------------------------------
REFUSALS = {
    "itself": (lambda w: (w.a.id, [w.b.id, w.a.id]), ValidationError, "not merged with itself"),
    "no others": (lambda w: (w.a.id, []), ValidationError, "name at least one record"),
    "not an id": (lambda w: (w.a.id, ["B"]), ValidationError, "'B' is not a record id"),
    "too large": (lambda w: (w.a.id, [2**64]), ValidationError, f"{2**64} is not a record id"),
    "missing": (lambda w: (w.a.id, [9999]), NotFound, "Customer #9999 (to be merged) does not"),
    "missing survivor": (
        lambda w: (9999, [w.b.id]),
        NotFound,
        "#9999 (the survivor) does not exist",
    ),
    "another entity": (lambda w: (w.a.id, [w.contacts_b[0]]), ValidationError, "not a Customer"),
    "too many": (
        lambda w: (w.a.id, list(range(1000, 1001 + MAX_OTHERS))),
        ValidationError,
        f"merge at most {MAX_OTHERS}",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_arguments_are_refused_and_change_nothing(world, case):
    arguments, error, message = REFUSALS[case]
    survivor, others = arguments(world)
    before = snapshot(world.engine)
    with pytest.raises(error, match=re.escape(message)):
        merge(world.engine, "Customer", survivor, others, world.root)
    assert snapshot(world.engine) == before


def test_a_record_in_the_recycle_bin_is_refused(world):
    records = world.engine.records
    gone = records.create("Customer", {"name": "XX酒业 (PRC)"}, allow_duplicate=True)
    records.delete("Customer", gone.id, actor=world.root)
    before = snapshot(world.engine)
    with pytest.raises(ValidationError, match="in the recycle bin; restore it first") as info:
        world.merge(others=[world.b.id, gone.id])
    assert info.value.field == "other_ids"
    assert snapshot(world.engine) == before


@pytest.mark.parametrize("entity", ["User", "Nowhere"])
def test_users_and_unknown_entities_are_not_merged(world, entity):
    before = snapshot(world.engine)
    with pytest.raises(ValidationError, match="users are not merged|not a known entity"):
        merge(world.engine, entity, world.ids["li"], [world.ids["wang"]], world.root)
    assert snapshot(world.engine) == before


class RefuseMovedTasks:
    """A plugin refusing, after the re-pointing, to see a task change customer."""

    name = "refuse_moved_tasks"

    @hookimpl
    def record_written(self, engine, event):
        if event.entity == "Task" and "customer" in event.changes:
            raise ValidationError(FieldProblem("Task", "customer", "may not move"))


def test_a_failure_half_way_rolls_the_whole_merge_back(build, clock):
    world = World(build(RefuseMovedTasks(), roles=True), clock)
    before = snapshot(world.engine)
    with pytest.raises(ValidationError, match="may not move"):
        world.merge()
    assert snapshot(world.engine) == before


# -- permissions ---------------------------------------------------------------------------------
def test_a_customer_manager_may_not_merge_customers_even_their_own(world):
    records, li = world.engine.records, world.actors["li"]
    twin = records.create("Customer", {"name": "XX酒业 Ltd"}, actor=li, allow_duplicate=True)
    before = snapshot(world.engine)
    with pytest.raises(PermissionDenied, match="customer_manager may not delete Customer"):
        merge(world.engine, "Customer", world.a.id, [twin.id], li)
    assert snapshot(world.engine) == before


def test_a_record_the_actor_cannot_read_is_not_found(world):
    before = snapshot(world.engine)
    with pytest.raises(NotFound, match=f"Customer #{world.d.id}"):
        merge(world.engine, "Customer", world.a.id, [world.d.id], world.actors["li"])
    assert snapshot(world.engine) == before


def test_a_reader_who_may_not_update_is_refused(world):
    before = snapshot(world.engine)
    with pytest.raises(PermissionDenied, match="executive may not update Customer"):
        world.merge("qian")
    assert snapshot(world.engine) == before


def test_a_supervisor_merges_within_their_team(world):
    result = world.merge("chen")
    assert result.survivor.id == world.a.id
    assert world.engine.records.audit_trail("Customer", world.a.id)[-1]["actor"] == "chen"


def test_a_supervisor_cannot_reach_another_teams_record(world):
    before = snapshot(world.engine)
    with pytest.raises(NotFound, match=f"Customer #{world.d.id}"):
        world.merge("chen", others=[world.b.id, world.d.id])
    assert snapshot(world.engine) == before


# -- duplicate groups ---------------------------------------------------------------------------
def test_groups_name_their_records_owners_and_shared_key_values(world):
    (group,) = duplicate_groups(world.engine, "Customer", actor=world.root)
    assert group.entity == "Customer"
    assert [(r.id, r.display, r.owner_name) for r in group.records] == [
        (world.a.id, "XX酒业有限公司", "li"),
        (world.b.id, "XX酒业", "wang"),
    ]
    assert [(k.key, k.fields, k.value, k.record_ids) for k in group.keys] == [
        ("name", ("name",), "xx酒业", (world.a.id, world.b.id))
    ]
    assert group.score == 0.5  # one of Customer's two keys (name, phone)


def test_a_group_matching_every_key_scores_one(world):
    world.engine.records.update(
        "Customer", world.a.id, {"phone": "+86 28 88886666"}, allow_duplicate=True
    )
    (group,) = duplicate_groups(world.engine, "Customer")
    assert group.score == 1.0
    assert [(k.key, k.value) for k in group.keys] == [("name", "xx酒业"), ("phone", "2888886666")]


def test_a_key_of_a_field_hidden_from_the_caller_shows_no_value(world):
    world.engine.records.update(
        "Customer", world.a.id, {"phone": "+86 28 88886666"}, allow_duplicate=True
    )
    (group,) = duplicate_groups(world.engine, "Customer", actor=world.actors["sun"])
    assert [(k.key, k.value) for k in group.keys] == [("name", "xx酒业"), ("phone", None)]


def test_groups_list_only_records_the_caller_may_read(world):
    assert duplicate_groups(world.engine, "Customer", actor=world.actors["li"]) == []
    assert len(duplicate_groups(world.engine, "Customer", actor=world.actors["chen"])) == 1


# -- batching -------------------------------------------------------------------------------------
class StatementCounter:
    """Counts every SQL statement the engine's connections send."""

    def __init__(self, engine) -> None:
        self.count = 0
        self.lock = threading.Lock()

        @engine.db.on_connect(provider="sqlite")
        def _sqlite(db, connection):
            connection.set_trace_callback(self.add)

        @engine.db.on_connect(provider="postgres")
        def _postgres(db, connection):
            import psycopg2.extensions

            counter = self

            class CountingCursor(psycopg2.extensions.cursor):
                def execute(self, sql, args=None):
                    counter.add(sql)
                    return super().execute(sql, args)

            connection.cursor_factory = CountingCursor

    def add(self, _sql: Any) -> None:
        with self.lock:
            self.count += 1


def test_a_merge_costs_the_same_statements_whatever_the_number_of_related_records(
    make_engine, clock
):
    engine = make_engine(sales, clock=clock, open=False)
    counter = StatementCounter(engine)
    engine.open(migrate=True)
    records = engine.records

    def pair(n: int) -> tuple[int, int]:
        survivor = records.create("Customer", {"name": f"Firm {n}"})
        other = records.create(
            "Customer", {"name": f"Firm {n} Ltd", "phone": f"1390000{n:04d}"}, allow_duplicate=True
        )
        for customer in (survivor.id, other.id):
            records.create_many(
                "Contact", [{"customer": customer, "name": f"c{i}"} for i in range(n)]
            )
            records.create_many(
                "Order",
                [
                    {"customer": customer, "ordered_on": "2027-01-01", "amount": "10"}
                    for _ in range(n)
                ],
            )
            records.create_many(
                "Payment",
                [{"customer": customer, "paid_on": "2027-01-02", "amount": "5"} for _ in range(n)],
            )
        return survivor.id, other.id

    def statements(n: int) -> int:
        survivor, other = pair(n)
        counter.count = 0
        result = merge(engine, "Customer", survivor, [other])
        assert {r.count for r in result.repointed} == {n}
        return counter.count

    few = statements(2)
    assert 0 < few == statements(40)
