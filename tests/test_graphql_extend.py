"""Plugins add fields to generated entity types with ``schema.extend`` (Customer.timeline)."""

import types

import pytest
import strawberry

from guanxi.engine import PluginError, hookimpl
from guanxi.graphql.schema import build_schema

from .graphql_client import graphql_client


def extending_plugin(entity: str, name: str, plugin: str = "fair_extras") -> types.ModuleType:
    module = types.ModuleType(f"guanxi_test_{plugin}")
    module.name = plugin

    def shout(root, info: strawberry.Info) -> str:
        return f"{root.name.upper()} #{root.id}"

    @hookimpl
    def register_graphql(schema):
        schema.extend(entity, name, strawberry.field(resolver=shout, description="Loud."))

    module.register_graphql = register_graphql
    return module


def ok(result: dict) -> dict:
    assert "errors" not in result, result
    return result["data"]


def test_an_extended_field_resolves_with_the_record_as_root(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), extending_plugin("Fair", "shouted_name"))
    fair = engine.records.create("Fair", {"name": "Sial"})
    with graphql_client(engine) as api:
        found = ok(api.gql("query($id: ID!) { fair(id: $id) { shoutedName } }", {"id": fair.id}))
    assert found == {"fair": {"shoutedName": f"SIAL #{fair.id}"}}


def test_an_extended_field_is_in_the_sdl_with_its_description(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), extending_plugin("Fair", "shouted_name"))
    sdl = build_schema(engine).as_str()
    assert '"""Loud."""\n  shoutedName: String!' in sdl


def test_extending_a_generated_field_is_a_plugin_error_naming_both(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), extending_plugin("Fair", "name"))
    with pytest.raises(PluginError, match=r"Fair.name is contributed twice: by the generated"):
        build_schema(engine)


def test_two_plugins_extending_one_name_is_a_plugin_error_naming_both(make_engine, test_plugin):
    engine = make_engine(
        test_plugin("expo"),
        extending_plugin("Fair", "shouted", plugin="one"),
        extending_plugin("Fair", "shouted", plugin="two"),
    )
    with pytest.raises(PluginError, match=r"by plugin (one|two) and by plugin (one|two)"):
        build_schema(engine)


def test_extending_an_unknown_entity_is_a_plugin_error(make_engine, test_plugin):
    engine = make_engine(test_plugin("expo"), extending_plugin("Fiar", "shouted"))
    with pytest.raises(PluginError, match="cannot add field 'shouted' to 'Fiar'"):
        build_schema(engine)
