"""Start-up settings: SandboxConfig.from_env, the purchases file, and the `sandbox` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import sandbox.cli
from sandbox import ConfigError, FaultSettings, SandboxConfig, create_sandbox_app, sandbox_command
from sandbox.state import state_of
from tests.sandbox.sandbox_testkit import CUSTOMERS_TOKEN, HAN_SOLO_PURCHASE, PERSONAL_DATA_TOKEN

FIXTURES_FILE = Path(sandbox.cli.__file__).with_name("fixtures") / "purchases.json"
TOKENS = {"SANDBOX_CUSTOMERS_TOKEN": CUSTOMERS_TOKEN, "SANDBOX_PERSONAL_DATA_TOKEN": PERSONAL_DATA_TOKEN}


def test_from_env_reads_tokens_file_and_faults() -> None:
    config = SandboxConfig.from_env(
        {
            **TOKENS,
            "SANDBOX_PURCHASES_FILE": "/tmp/purchases.json",
            "SANDBOX_FAULT_THROTTLE_RATE": "0.25",
            "SANDBOX_FAULT_RETRY_AFTER": "3",
            "SANDBOX_FAULT_SEED": "9",
        }
    )

    assert (config.customers_token, config.personal_data_token) == (CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN)
    assert config.purchases_file == Path("/tmp/purchases.json")
    assert config.faults == FaultSettings(throttle_rate=0.25, retry_after=3, seed=9)


def test_from_env_defaults_to_no_file_and_no_faults() -> None:
    config = SandboxConfig.from_env(TOKENS)

    assert (config.purchases_file, config.faults) == (None, FaultSettings())


@pytest.mark.parametrize("variable", ["SANDBOX_CUSTOMERS_TOKEN", "SANDBOX_PERSONAL_DATA_TOKEN"])
@pytest.mark.parametrize("value", [None, "", "  "])
def test_from_env_names_a_missing_token(variable: str, value: str | None) -> None:
    environ = {k: v for k, v in TOKENS.items() if k != variable}
    if value is not None:
        environ[variable] = value

    with pytest.raises(ConfigError, match=variable):
        SandboxConfig.from_env(environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SANDBOX_FAULT_SLOW_RATE", "often"),
        ("SANDBOX_FAULT_SEED", "1.5"),
        ("SANDBOX_FAULT_UNAVAILABLE_RATE", "2"),
    ],
)
def test_from_env_names_a_malformed_fault_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        SandboxConfig.from_env({**TOKENS, variable: value})


def test_purchases_file_is_loaded_at_start() -> None:
    app = create_sandbox_app(
        SandboxConfig(CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, purchases_file=FIXTURES_FILE)
    )

    purchase = state_of(app).store.find_purchase(356018965)

    assert purchase is not None
    assert purchase["billingContact"]["lastName"] == "Solo"
    assert state_of(app).store.stats()["purchases"] == len(json.loads(FIXTURES_FILE.read_text()))


@pytest.mark.parametrize("content", [None, "not json", '{"id": 1}', '[{"id": "one"}]'])
def test_unusable_purchases_file_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "purchases.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ConfigError, match="SANDBOX_PURCHASES_FILE"):
        create_sandbox_app(SandboxConfig(CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, purchases_file=path))


def test_seeding_copies_the_purchases() -> None:
    app = create_sandbox_app(SandboxConfig(CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN))
    purchase = json.loads(json.dumps(HAN_SOLO_PURCHASE))
    state_of(app).store.seed_purchases([purchase])

    state_of(app).store.erase_personal_data(356018965)

    assert purchase["billingContact"]["firstName"] == "Han"


def test_empty_tokens_are_refused() -> None:
    with pytest.raises(ConfigError):
        SandboxConfig(customers_token="", personal_data_token=PERSONAL_DATA_TOKEN)


def test_command_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_CUSTOMERS_TOKEN", raising=False)
    monkeypatch.setenv("SANDBOX_PERSONAL_DATA_TOKEN", PERSONAL_DATA_TOKEN)

    result = CliRunner().invoke(sandbox_command, [])

    assert result.exit_code == 2
    assert "SANDBOX_CUSTOMERS_TOKEN" in result.output


def test_command_prints_both_urls_and_serves_on_the_env_port(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(sandbox.cli, "serve", lambda config, host, port: served.append(locals()))
    for name, value in {**TOKENS, "SANDBOX_PORT": "6060"}.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(sandbox_command, ["--host", "0.0.0.0"])

    assert result.exit_code == 0, result.output
    assert "http://0.0.0.0:6060/customers/graphql" in result.output
    assert "http://0.0.0.0:6060/personal-data/graphql" in result.output
    assert [(s["host"], s["port"]) for s in served] == [("0.0.0.0", 6060)]


def test_command_takes_the_api_latency_from_its_option(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[SandboxConfig] = []
    monkeypatch.setattr(sandbox.cli, "serve", lambda config, host, port: served.append(config))
    for name, value in {**TOKENS, "SANDBOX_API_LATENCY_MS": "30"}.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(sandbox_command, ["--api-latency-ms", "50"])

    assert result.exit_code == 0, result.output
    assert [config.api_latency_ms for config in served] == [50]


def test_api_latency_comes_from_the_environment_and_defaults_to_zero() -> None:
    assert SandboxConfig.from_env({**TOKENS, "SANDBOX_API_LATENCY_MS": "30"}).api_latency_ms == 30
    assert SandboxConfig.from_env(TOKENS).api_latency_ms == 0


@pytest.mark.parametrize("value", ["fast", "1.5", "-1"])
def test_a_malformed_api_latency_names_its_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="SANDBOX_API_LATENCY_MS"):
        SandboxConfig.from_env({**TOKENS, "SANDBOX_API_LATENCY_MS": value})
