"""Configuration from the environment, including plugins' own GUANXI_<PLUGIN>_* settings."""

import pytest

from guanxi.engine import Config, ConfigError


def test_a_plugin_setting_is_read_from_its_variable():
    config = Config.from_env({"GUANXI_SALES_CLAIM_CAP": "25"})
    assert config.setting("GUANXI_SALES_CLAIM_CAP", 100) == 25


def test_an_unset_plugin_setting_is_its_default():
    assert Config.from_env({}).setting("GUANXI_SALES_CLAIM_CAP", 100) == 100


def test_the_engines_own_variables_are_not_plugin_settings():
    config = Config.from_env(
        {"GUANXI_CURRENCY": "EUR", "GUANXI_MAX_DEPTH": "9", "GUANXI_SALES_X": "1", "HOME": "/r"}
    )
    assert dict(config.settings) == {"GUANXI_SALES_X": "1"}


def test_a_plugin_setting_that_is_not_a_whole_number_names_the_variable():
    config = Config.from_env({"GUANXI_SALES_CLAIM_CAP": "lots"})
    with pytest.raises(ConfigError, match="GUANXI_SALES_CLAIM_CAP 'lots' must be a whole number"):
        config.setting("GUANXI_SALES_CLAIM_CAP", 100)
