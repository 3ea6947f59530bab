from __future__ import annotations

from dataclasses import fields

import pytest

from relay.config import SETTINGS_DOC, ConfigError, Settings, env_name, settings_table
from tests.conftest import REPO


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for f in fields(Settings):
        assert f.name in SETTINGS_DOC, f"{f.name} has no description"
        assert f"`{env_name(f.name)}`" in readme, f"README's settings table lacks {env_name(f.name)}"
    assert settings_table() in readme, "README's settings table is stale: paste `realtime-relay settings`"


def test_environment_is_parsed_and_validated() -> None:
    s = Settings.from_env({"RELAY_PORT": "9001", "OPENAI_API_KEY": "sk-secret", "RELAY_EMULATOR_SPEED": "0"})
    assert s.port == 9001 and s.emulator_speed == 0.0
    assert not s.openai_emulated
    assert "sk-secret" not in repr(s)
    with pytest.raises(ConfigError, match="RELAY_PORT"):
        Settings.from_env({"RELAY_PORT": "eighty"})
    with pytest.raises(ConfigError, match="HARD_LIMIT"):
        Settings.from_env({"RELAY_OUTBOUND_HIGH_WATER_MS": "5000", "RELAY_OUTBOUND_HARD_LIMIT_MS": "100"})
    assert Settings.from_env({}).openai_emulated
