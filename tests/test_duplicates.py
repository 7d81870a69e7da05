"""Duplicate detection (查重): normalised keys, the check at the door, groups, the index."""

from __future__ import annotations

import threading

import pytest
from pony.orm import db_session

from guanxi.engine import Actor, ConflictError, NotFound
from guanxi.engine.duplicates import normalise

from .conftest import sql_log

XX = "XX酒业有限公司"


@pytest.fixture
def engine(make_engine, plugin):
    return make_engine(plugin)


def company(engine, name, phone=None, **kw):
    data = {"name": name, **({"phone": phone} if phone else {})}
    return engine.records.create("Company", data, **kw)


@pytest.fixture
def plugin(test_plugin):
    return test_plugin("dedup")


def rep(engine, username: str) -> Actor:
    user = engine.records.create("User", {"username": username, "roles": ["rep"]})
    return Actor(id=user.id, username=username, roles=frozenset({"rep"}))


def key_rows(engine, entity: str = "Company") -> int:
    with db_session:
        table = engine.classes["GxDedupKey"]
        return table.select(lambda k: k.entity == entity).count()


# -- normalisation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant", ["XX酒业", "ＸＸ酒业 有限公司", "xx酒业股份有限公司", "XX 酒业（中国）有限公司"]
)
def test_company_suffix_width_case_and_space_variants_normalise_alike(variant):
    assert normalise("string", variant) == normalise("string", XX) == "xx酒业"


@pytest.mark.parametrize("variant", ["Acme Co., Ltd.", "ACME Co.,Ltd", "acme inc", "Acme GmbH"])
def test_latin_legal_forms_are_dropped_as_words(variant):
    assert normalise("string", variant) == "acme"


def test_a_group_stays_distinct_from_a_company():
    assert normalise("string", "XX集团有限公司") == "xx集团" != normalise("string", XX)


def test_a_name_that_is_only_a_suffix_is_kept():
    assert normalise("string", "Limited") == "limited"


@pytest.mark.parametrize(
    "variant",
    ["+86 138-0013-8000", "0086 13800138000", "8613800138000", "１３８ ００１３ ８０００"],
)
def test_phone_country_code_and_formatting_are_ignored(variant):
    assert normalise("phone", variant) == normalise("phone", "13800138000") == "13800138000"


def test_phone_trunk_zero_and_extension_are_ignored():
    assert normalise("phone", "010-8888 6666 ext 12") == normalise("phone", "+86 10 8888 6666")


def test_email_is_case_folded():
    assert normalise("email", " Li@Example.COM ") == "li@example.com"


# -- at the door ------------------------------------------------------------------------------
def test_a_company_name_variant_is_refused_as_a_duplicate(engine):
    first = company(engine, XX)
    with pytest.raises(ConflictError, match="may be a duplicate") as info:
        company(engine, "ＸＸ酒业 有限公司")
    [candidate] = info.value.details["candidates"]
    assert candidate["id"] == first.id
    assert candidate["name"] == XX
    assert candidate["matched_keys"] == ["name"]
    assert engine.records.list("Company").total_count == 1


def test_a_phone_variant_is_refused_as_a_duplicate(engine):
    first = company(engine, "Alpha", "13800138000")
    with pytest.raises(ConflictError) as info:
        company(engine, "Beta", "+86 138-0013-8000")
    assert [(c["id"], c["matched_keys"]) for c in info.value.details["candidates"]] == [
        (first.id, ["phone"])
    ]


def test_unrelated_names_are_not_candidates(engine):
    company(engine, XX, "13800138000")
    company(engine, "YY酒业有限公司", "13900139000")
    assert engine.duplicates.candidates("Company", {"name": "XX酒业集团"}) == []


def test_candidates_matching_every_key_rank_first(engine):
    by_name = company(engine, XX)
    both = company(engine, "XX酒业", "13800138000", allow_duplicate=True)
    found = engine.duplicates.candidates("Company", {"name": XX, "phone": "138 0013 8000"})
    assert [(c.record_id, c.score) for c in found] == [(both.id, 1.0), (by_name.id, 0.5)]


def test_allow_duplicate_lets_the_record_through(engine):
    company(engine, XX)
    second = company(engine, "XX酒业", allow_duplicate=True)
    assert engine.records.get("Company", second.id).name == "XX酒业"


def test_an_update_to_a_duplicate_is_refused(engine):
    first = company(engine, XX)
    other = company(engine, "Other")
    with pytest.raises(ConflictError) as info:
        engine.records.update("Company", other.id, {"name": "xx酒业"})
    assert info.value.details["candidates"][0]["id"] == first.id
    assert engine.records.get("Company", other.id).name == "Other"


def test_an_update_that_leaves_the_keys_alone_passes_for_an_allowed_duplicate(engine):
    company(engine, XX)
    second = company(engine, "XX酒业", allow_duplicate=True)
    engine.records.update("Company", second.id, {"notes": "checked: a different firm"})
    assert engine.records.get("Company", second.id).version == 2


def test_a_deleted_record_is_not_a_candidate_and_restoring_it_reindexes(engine):
    first = company(engine, XX)
    engine.records.delete("Company", first.id)
    assert engine.duplicates.candidates("Company", {"name": "XX酒业"}) == []
    second = company(engine, "XX酒业")
    engine.records.restore("Company", first.id)
    found = engine.duplicates.candidates("Company", {"name": "XX酒业"}, exclude_id=second.id)
    assert [c.record_id for c in found] == [first.id]


def test_candidates_of_other_owners_reveal_only_id_name_and_owner(engine):
    alice, bob = rep(engine, "alice"), rep(engine, "bob")
    mine = company(engine, XX, "13800138000", actor=alice)
    with pytest.raises(ConflictError) as info:
        company(engine, "XX酒业", actor=bob)
    [candidate] = info.value.details["candidates"]
    assert candidate == {
        "id": mine.id,
        "name": XX,
        "owner_id": alice.id,
        "owner": "alice",
        "matched_keys": ["name"],
        "score": 0.5,
    }
    assert "13800138000" not in str(info.value)
    with pytest.raises(NotFound):
        engine.records.get("Company", mine.id, actor=bob)


def test_a_person_is_matched_by_email_and_owned_through_the_company(engine):
    alice = rep(engine, "alice")
    firm = company(engine, XX, actor=alice)
    person = engine.records.create(
        "Person", {"company": firm.id, "name": "Li", "email": "li@xx.cn"}, actor=alice
    )
    with pytest.raises(ConflictError) as info:
        engine.records.create("Person", {"name": "Li Wei", "email": "LI@XX.CN"})
    [candidate] = info.value.details["candidates"]
    assert (candidate["id"], candidate["name"], candidate["owner_id"]) == (
        person.id,
        "Li",
        alice.id,
    )


def test_two_concurrent_creates_of_one_company_let_only_one_through(engine, plugin):
    plugin.GATE.append(threading.Barrier(2))
    outcomes: list[str] = []

    def create(name: str) -> None:
        try:
            company(engine, name)
            outcomes.append("created")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create, args=(n,)) for n in (XX, "ＸＸ酒业")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "created"]
    assert engine.records.list("Company").total_count == 1


# -- groups ----------------------------------------------------------------------------------
def test_groups_link_records_sharing_any_key(engine):
    a = company(engine, XX, "010-88886666")
    b = company(engine, "XX酒业", allow_duplicate=True)
    c = company(engine, "Other name", "+86 10 8888 6666", allow_duplicate=True)
    d = company(engine, "Pair", "13800138000")
    e = company(engine, "Pair Ltd", allow_duplicate=True)
    company(engine, "Alone")
    groups = engine.duplicates.groups("Company", limit=10)
    assert [(g.record_ids, g.keys, g.score) for g in groups] == [
        ((a.id, b.id, c.id), ("name", "phone"), 1.0),
        ((d.id, e.id), ("name",), 0.5),
    ]


def test_groups_leave_out_records_the_actor_cannot_read(engine):
    alice, bob = rep(engine, "alice"), rep(engine, "bob")
    company(engine, XX, actor=alice)
    company(engine, "XX酒业", actor=bob, allow_duplicate=True)
    assert engine.duplicates.groups("Company", actor=alice) == []
    assert len(engine.duplicates.groups("Company")) == 1


# -- create_many and the index -----------------------------------------------------------------
def test_create_many_keeps_the_keys_of_every_row(engine):
    rows = [{"name": f"Firm {i} Co., Ltd.", "phone": f"1380013{i:04d}"} for i in range(30)]
    ids = engine.records.create_many("Company", rows, batch_size=7)
    assert key_rows(engine) == 60
    found = engine.duplicates.candidates("Company", {"phone": "+86 138 0013 0017"})
    assert [c.record_id for c in found] == [ids[17]]


def test_create_many_refuses_rows_duplicating_records_or_each_other(engine):
    old = company(engine, XX)
    rows = [{"name": "Fresh"}, {"name": "XX酒业"}, {"name": "Other"}, {"name": "fresh ltd"}]
    with pytest.raises(ConflictError) as info:
        engine.records.create_many("Company", rows)
    entries = info.value.details["candidates"]
    assert [(e["row"], e.get("id"), e.get("other_row")) for e in entries] == [
        (2, old.id, None),
        (4, None, 1),
    ]
    assert engine.records.list("Company").total_count == 1
    assert key_rows(engine) == 1


def test_create_many_with_allow_duplicate_writes_them(engine):
    company(engine, XX)
    engine.records.create_many("Company", [{"name": "XX酒业"}] * 2, allow_duplicate=True)
    assert len(engine.duplicates.candidates("Company", {"name": XX})) == 3


def test_candidates_take_the_same_number_of_queries_whatever_the_table_size(engine):
    def queries() -> int:
        with sql_log() as seen:
            found = engine.duplicates.candidates("Company", {"name": XX, "phone": "13800138000"})
        assert found
        return len([s for s in seen if s.lstrip().upper().startswith("SELECT")])

    company(engine, XX)
    small = queries()
    engine.records.create_many(
        "Company", [{"name": f"Firm {i}", "phone": f"1390000{i:04d}"} for i in range(2000)]
    )
    assert queries() == small
    assert 2 <= small <= 4


def test_the_key_lookup_uses_the_index(engine):
    company(engine, XX)
    sql = (
        'SELECT "record_id" FROM "guanxi_dedup_key" WHERE "entity" = \'Company\' '
        "AND \"key_name\" = 'name' AND \"value\" = 'xx酒业'"
    )
    with db_session:
        if engine.db.provider.dialect == "SQLite":
            plan = str(engine.db.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
            assert "USING COVERING INDEX" in plan
        else:
            engine.db.execute("SET LOCAL enable_seqscan = off")
            plan = str(engine.db.execute("EXPLAIN " + sql).fetchall())
            assert "Index" in plan and "Seq Scan" not in plan


def test_rebuild_indexes_rows_written_without_keys(engine):
    first = company(engine, XX, "13800138000")
    with db_session:
        engine.db.execute('DELETE FROM "guanxi_dedup_key"')
    assert engine.duplicates.candidates("Company", {"name": XX}) == []
    assert engine.duplicates.rebuild("Company") == 1
    assert [c.record_id for c in engine.duplicates.candidates("Company", {"name": XX})] == [
        first.id
    ]


def test_opening_an_engine_indexes_entities_whose_keys_are_new(make_engine, test_plugin):
    plugin = test_plugin("dedup")
    first = make_engine(plugin)
    kept = company(first, XX)
    with db_session:
        first.db.execute('DELETE FROM "guanxi_dedup_key"')
        first.db.execute('DELETE FROM "guanxi_setting" WHERE "key" LIKE \'dedup:%\'')
    first.close()
    again = make_engine(plugin)
    assert [c.record_id for c in again.duplicates.candidates("Company", {"name": XX})] == [kept.id]


def test_an_entity_without_duplicate_keys_has_no_candidates(engine):
    engine.records.create("User", {"username": "li"})
    assert engine.duplicates.candidates("User", {"username": "li"}) == []
