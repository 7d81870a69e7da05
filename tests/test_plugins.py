"""The plugin host: loading, allow-listing, requirements, misspelt hooks, every hook called."""

from __future__ import annotations

import click
import pytest

from guanxi.engine import Actor, Config, Engine, PluginError
from guanxi.engine.plugins import load_plugins
from guanxi.engine.timeline import timeline

SHIPPED = {"graphql", "sales", "marketing", "service", "rfm"}


def config(tmp_path, **kwargs):
    return Config(home=tmp_path, database_url=f"sqlite:///{tmp_path}/g.db", **kwargs)


def test_shipped_plugins_load_through_the_entry_point_group(tmp_path):
    _, infos = load_plugins(config(tmp_path))
    assert SHIPPED <= {info.name for info in infos}


def test_graphql_is_a_core_plugin_and_business_plugins_are_not(tmp_path):
    _, infos = load_plugins(config(tmp_path))
    kinds = {info.name: info.core for info in infos}
    assert kinds["graphql"] is True
    assert not any(kinds[name] for name in SHIPPED - {"graphql"})


def test_guanxi_plugins_limits_business_plugins_but_keeps_core(tmp_path):
    _, infos = load_plugins(config(tmp_path, plugins=("sales",)))
    assert {info.name for info in infos} == {"graphql", "sales"}


def test_an_unknown_name_in_guanxi_plugins_is_an_error(tmp_path):
    with pytest.raises(PluginError, match="GUANXI_PLUGINS names nosuch"):
        load_plugins(config(tmp_path, plugins=("nosuch",)))


def test_a_missing_required_plugin_names_both(tmp_path):
    with pytest.raises(PluginError) as info:
        load_plugins(config(tmp_path, plugins=("service",)))
    assert "plugin service needs plugin sales" in str(info.value)


def test_a_test_plugin_requiring_an_absent_plugin_fails(tmp_path, test_plugin):
    with pytest.raises(PluginError, match="needy needs plugin fairs_extra"):
        load_plugins(config(tmp_path), extra=[test_plugin("needy")], use_entry_points=False)


def test_a_misspelt_hook_is_an_error(tmp_path, test_plugin):
    with pytest.raises(PluginError, match="register_entites"):
        load_plugins(config(tmp_path), extra=[test_plugin("misspelt")], use_entry_points=False)


def test_loading_is_explicit_not_a_side_effect_of_import(tmp_path):
    import guanxi.engine  # noqa: F401
    import guanxi.plugins.sales as sales

    # importing a plugin registers nothing anywhere; only load_plugins does
    pm, _ = load_plugins(config(tmp_path), use_entry_points=False)
    assert not pm.is_registered(sales)


def test_every_hook_of_a_plugin_is_called(tmp_path, test_plugin):
    expo = test_plugin("expo")
    engine = Engine(config(tmp_path), plugins=[expo], use_entry_points=False)
    group = click.Group()
    engine.hook.register_commands(cli=group)
    engine.hook.register_graphql(schema=object())
    engine.hook.transition_fired(engine=engine, event=None)
    engine.hook.deliver_message(engine=engine, message=None)
    engine.open()
    fair = engine.records.create("Fair", {"name": "x"})  # before_commit and record_written
    timeline(engine, "Fair", fair.id)  # timeline_entries
    reader = Actor(id=None, username="reader", roles=frozenset({"admin"}))
    engine.records.list("Fair", actor=reader)  # mask_values and masked_fields: a user reads
    engine.close()
    from guanxi.engine import hookspecs

    specs = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "guanxi_spec")}
    called = set(expo.CALLS) | {"before_commit", "record_written"}
    # asgi_app is implemented by the GraphQL core plugin: see test_app.py
    assert specs - called == {"asgi_app"}
    assert expo.EVENTS  # record_written really ran


def test_contributions_are_collected_with_their_origin(tmp_path, test_plugin):
    engine = Engine(config(tmp_path), plugins=[test_plugin("expo")], use_entry_points=False)
    assert engine.roles["fair_office"].origin == "plugin expo"
    assert engine.roles["admin"].origin == "engine"


def test_the_same_role_from_two_plugins_is_an_error(tmp_path):
    from guanxi.engine import hookimpl

    class One:
        name = "one"

        @hookimpl
        def register_roles(self, register):
            register("auditor", {"label": "Auditor"})

    class Two(One):
        name = "two"

    with pytest.raises(PluginError, match="by plugin one and by plugin two"):
        Engine(config(tmp_path), plugins=[One(), Two()], use_entry_points=False)


def test_entities_of_two_plugins_with_one_name_name_both(tmp_path):
    from guanxi.engine import ConfigError, hookimpl

    class Dup:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def register_entities(self, register):
            register({"name": "Booth", "fields": {"code": "string"}})

    with pytest.raises(ConfigError, match="declared twice: by plugin a and by plugin b"):
        Engine(config(tmp_path), plugins=[Dup("a"), Dup("b")], use_entry_points=False)


def test_an_extension_clashing_with_an_own_field_names_both(tmp_path, test_plugin):
    from guanxi.engine import ConfigError, hookimpl

    class Clash:
        name = "clash"

        @hookimpl
        def extend_entities(self, extend):
            extend("Fair", {"season": {"type": "string"}})

    with pytest.raises(ConfigError, match="Fair.season is already declared by"):
        Engine(config(tmp_path), plugins=[test_plugin("expo"), Clash()], use_entry_points=False)


def test_a_ref_to_an_entity_of_another_plugin_gets_a_reverse_side(tmp_path, test_plugin):
    from guanxi.engine import hookimpl

    class Stands:
        name = "stands"

        @hookimpl
        def register_entities(self, register):
            register({"name": "Stand", "fields": {"fair": {"type": "ref", "to": "Fair"}}})

    engine = Engine(
        config(tmp_path), plugins=[test_plugin("expo"), Stands()], use_entry_points=False
    )
    assert engine.registry["Fair"].reverses["stands"].source == "Stand"


def test_two_refs_with_the_same_reverse_name_clash(tmp_path, test_plugin):
    from guanxi.engine import ConfigError, hookimpl

    class Twice:
        name = "twice"

        @hookimpl
        def register_entities(self, register):
            register(
                {
                    "name": "Stand",
                    "fields": {
                        "fair": {"type": "ref", "to": "Fair"},
                        "backup_fair": {"type": "ref", "to": "Fair"},
                    },
                }
            )

    with pytest.raises(ConfigError, match="reverse name Fair.stands clashes"):
        Engine(config(tmp_path), plugins=[test_plugin("expo"), Twice()], use_entry_points=False)


def test_engines_share_no_state(tmp_path, test_plugin):
    a = Engine(config(tmp_path), plugins=[test_plugin("expo")], use_entry_points=False)
    b = Engine(config(tmp_path), use_entry_points=False)
    assert a.db is not b.db and "Fair" in a.classes and "Fair" not in b.classes
