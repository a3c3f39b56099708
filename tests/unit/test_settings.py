"""The settings definition: precedence, coercion and the one-line errors, absolute
paths, derived defaults, the names and flags derived from each field."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from compute_worker.app.errors import SettingsError, StartupError
from compute_worker.app.settings import ENV_PREFIX, Settings, describe_settings
from compute_worker.domain.use_cases.authenticate import SeedKey
from compute_worker.domain.webhooks import WebhookProvider

SEED = {"key": "k" * 20, "scopes": ["runs:read"], "name": "reader"}
SECRET = base64.b64encode(b"s" * 32).decode()


def load(options: dict[str, Any] | None = None, **env: str) -> Settings:
    return Settings.load(options or {}, {ENV_PREFIX + k.upper(): v for k, v in env.items()})


def refused(options: dict[str, Any] | None = None, origin: str = "option", **env: str) -> str:
    environ = {ENV_PREFIX + k.upper(): v for k, v in env.items()}
    with pytest.raises(SettingsError) as caught:
        Settings.load(options or {}, environ, origin=origin)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- precedence ------------------------------------------------------------------------------


def test_defaults_when_nothing_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load()
    assert (settings.host, settings.port, settings.worldcompute) == ("127.0.0.1", 8080, "process")
    assert settings.process_children == 4 and settings.process_memory_mb == 1024
    assert settings.step_timeout_seconds == 300.0 and settings.max_body_bytes == 10 * 1024**2
    assert settings.encryption is True and settings.seed_api_keys == ()
    assert settings.data_dir == tmp_path / "data"


def test_an_option_beats_the_environment_which_beats_the_default() -> None:
    assert load(port="9000").port == 9000
    assert load({"port": 7000}, port="9000").port == 7000
    assert load({"port": None}, port="9000").port == 9000  # None: not given
    assert load({"process_children": 2}).process_children == 2
    assert load(process_children="3").process_children == 3
    assert load({"process_children": "2"}, process_children="3").process_children == 2


def test_empty_environment_variables_count_as_unset() -> None:
    assert load(port="", host="").port == 8080


def test_the_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTE_WORKER_STEP_TIMEOUT_SECONDS", "12.5")
    assert Settings.load().step_timeout_seconds == 12.5
    assert Settings.load({}, {}).step_timeout_seconds == 300.0


def test_every_setting_but_python_only_ones_has_an_env_var_and_a_flag() -> None:
    specs = {spec.name: spec for spec in describe_settings()}
    assert list(specs) == list(Settings.model_fields)
    for name, spec in specs.items():
        assert spec.description, name
        if name in ("on_webhook", "trace_exporter"):
            assert (spec.env, spec.flag, spec.python_only) == (None, None, True)
        else:
            assert spec.env == "COMPUTE_WORKER_" + name.upper()
            assert spec.flag == "--" + name.replace("_", "-")
    for formerly_env_only in (
        "process_children",
        "process_memory_mb",
        "step_timeout_seconds",
        "internal_url",
    ):
        assert specs[formerly_env_only].flag is not None
    assert specs["require_https"].flags == "--require-https/--no-require-https"


def test_a_python_only_setting_ignores_the_environment() -> None:
    async def sink(delivery: dict[str, Any]) -> None:
        return None

    assert load(on_webhook="not callable").on_webhook is None
    assert load({"on_webhook": sink}).on_webhook is sink
    assert "on_webhook" in refused({"on_webhook": 3})


# -- coercion --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("yes", True), ("on", True), ("TRUE", True),
     ("false", False), ("0", False), ("no", False), ("off", False)],
)  # fmt: skip
def test_booleans_from_the_environment(raw: str, expected: bool) -> None:
    assert load(require_https=raw).require_https is expected


def test_numbers_choices_and_urls_are_coerced() -> None:
    settings = load(
        port="0",
        stream_poll_interval="0.25",
        idempotency_retention_hours="0.5",
        worldcompute="LOCAL",
        log_level="Debug",
        internal_url="http://10.0.0.5:8080/",
        database_url=" postgresql://u@db:5432/world ",
    )
    assert settings.port == 0 and settings.stream_poll_interval == 0.25
    assert settings.idempotency_retention_hours == 0.5
    assert (settings.worldcompute, settings.log_level) == ("local", "debug")
    assert settings.internal_url == "http://10.0.0.5:8080"
    assert settings.database_url == "postgresql://u@db:5432/world"
    assert settings.database_kind == "postgresql"


def test_json_settings_from_the_environment_flags_and_python_values() -> None:
    from_env = load(seed_api_keys=json.dumps([SEED]))
    assert from_env.seed_api_keys == (SeedKey("k" * 20, frozenset({"runs:read"}), "reader"),)
    from_flag = Settings.load({"seed_api_keys": json.dumps([SEED])}, {}, origin="flag")
    assert from_flag.seed_api_keys == from_env.seed_api_keys
    assert load({"seed_api_keys": [SEED]}).seed_api_keys == from_env.seed_api_keys
    providers = {"gh": {"scheme": "github", "secret": "s3", "trigger": {"workflow": "w"}}}
    settings = load(webhook_providers=json.dumps(providers))
    assert settings.webhook_providers == (
        WebhookProvider("gh", "github", "s3", trigger_workflow="w"),
    )
    assert load({"webhook_providers": providers}).webhook_providers == settings.webhook_providers


def test_delivery_allow_takes_a_list_or_comma_separated_patterns() -> None:
    expected = ("localhost", "*.example.com", "10.0.0.0/8")
    assert load(delivery_allow="localhost, *.example.com 10.0.0.0/8").delivery_allow == expected
    assert load(delivery_allow=json.dumps(list(expected))).delivery_allow == expected
    assert load({"delivery_allow": list(expected)}).delivery_allow == expected
    assert load().delivery_allow == ()
    assert "DELIVERY_ALLOW must be valid host patterns: invalid port" in refused(
        delivery_allow="host:99999"
    )
    assert "--delivery-allow must be valid host patterns" in refused(
        {"delivery_allow": "a*b.com"}, origin="flag"
    )


def test_the_encryption_secret_is_base64_of_32_bytes_or_more() -> None:
    assert load(encryption_secret=SECRET).encryption_secret == b"s" * 32
    assert load({"encryption_secret": b"b" * 40}).encryption_secret == b"b" * 40


def test_secrets_stay_out_of_reprs_and_dumps() -> None:
    settings = load(
        {"seed_api_keys": [SEED], "database_url": "postgresql://u:hunter2@db/w"},
        encryption_secret=SECRET,
    )
    for shown in (repr(settings), json.dumps(settings.public())):
        assert SEED["key"] not in shown and SECRET not in shown and "hunter2" not in shown
    public = settings.public()
    assert public["seed_api_keys"] == [{"name": "reader", "scopes": ["runs:read"]}]
    assert public["encryption_secret"] == "(set)"
    assert public["database_url"] == "postgresql://u:***@db/w"


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


# -- one clear line per bad value ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"port": "abc"}, "COMPUTE_WORKER_PORT must be an integer between 0 and 65535, not 'abc'"),
        ({"port": "70000"}, "COMPUTE_WORKER_PORT must be an integer between 0 and 65535, not "
                            "'70000'"),
        ({"require_https": "maybe"}, "COMPUTE_WORKER_REQUIRE_HTTPS must be true or false, not "
                                     "'maybe'"),
        ({"worldcompute": "cloud"}, "COMPUTE_WORKER_WORLDCOMPUTE must be one of 'process', "
                                    "'local', not 'cloud'"),
        ({"log_level": "loud"}, "COMPUTE_WORKER_LOG_LEVEL must be one of 'debug', 'info', "
                                "'warning', 'error', not 'loud'"),
        ({"rate_limit_per_minute": "-1"}, "COMPUTE_WORKER_RATE_LIMIT_PER_MINUTE must be an "
                                          "integer between 0 and 1000000, not '-1'"),
        ({"max_body_bytes": "0"}, "COMPUTE_WORKER_MAX_BODY_BYTES must be an integer between 1 "
                                  "and 1073741824, not '0'"),
        ({"stream_poll_interval": "0"}, "COMPUTE_WORKER_STREAM_POLL_INTERVAL must be a number "
                                        "greater than 0 and at most 60, not '0'"),
        ({"step_timeout_seconds": "soon"}, "COMPUTE_WORKER_STEP_TIMEOUT_SECONDS must be a number "
                                           "greater than 0 and at most 604800, not 'soon'"),
        ({"process_children": "0"}, "COMPUTE_WORKER_PROCESS_CHILDREN must be an integer between "
                                    "1 and 256, not '0'"),
        ({"process_memory_mb": "64"}, "COMPUTE_WORKER_PROCESS_MEMORY_MB must be an integer "
                                      "between 128 and 1048576, not '64'"),
        ({"idempotency_retention_hours": "-2"}, "COMPUTE_WORKER_IDEMPOTENCY_RETENTION_HOURS must "
                                                "be a number greater than 0"),
        ({"seed_api_keys": "{not json"}, "COMPUTE_WORKER_SEED_API_KEYS is not JSON: "),
        ({"seed_api_keys": '{"key": "x"}'}, "COMPUTE_WORKER_SEED_API_KEYS must be a JSON list"),
        ({"seed_api_keys": '[{"key": "short", "scopes": []}]'},
         "COMPUTE_WORKER_SEED_API_KEYS[0].key must have at least 16 characters"),
        ({"seed_api_keys": json.dumps([{**SEED, "scopes": ["root"]}])},
         "COMPUTE_WORKER_SEED_API_KEYS[0].scopes: "),
        ({"webhook_providers": '{"gh": {"scheme": "smtp"}}'},
         "COMPUTE_WORKER_WEBHOOK_PROVIDERS.gh.scheme must be one of github, stripe, standard"),
        ({"webhook_providers": '["gh"]'}, "COMPUTE_WORKER_WEBHOOK_PROVIDERS must be a JSON object"),
        ({"encryption_secret": "!!"}, "COMPUTE_WORKER_ENCRYPTION_SECRET must be base64"),
        ({"encryption_secret": base64.b64encode(b"short").decode()},
         "COMPUTE_WORKER_ENCRYPTION_SECRET must hold 32 bytes or more, not 5"),
        ({"database_url": "mysql://u@db/w"}, "COMPUTE_WORKER_DATABASE_URL must be a URL like "
                                             "postgresql+asyncpg://"),
        ({"internal_url": "localhost:8080"}, "COMPUTE_WORKER_INTERNAL_URL must be an http:// or "
                                             "https:// URL"),
        ({"keyfile": "key.pem"}, "keyfile is set but certfile is not"),
    ],
)  # fmt: skip
def test_a_bad_environment_variable_is_one_line_naming_it(
    env: dict[str, str], message: str
) -> None:
    assert message in refused(**env)


def test_secret_inputs_are_not_echoed_in_errors() -> None:
    assert "!!wrong" not in refused(encryption_secret="!!wrong")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": "abc"}, "option port must be an integer between 0 and 65535, not 'abc'"),
        ({"port": 1.5}, "option port must be an integer between 0 and 65535, not 1.5"),
        ({"port": [80]}, "option port must be an integer"),
        ({"data_dir": " "}, "option data_dir must not be empty"),
        ({"prot": 80}, "unknown option 'prot' (did you mean 'port'?)"),
        ({"frobnicate": 1}, "unknown option 'frobnicate'"),
    ],
)
def test_a_bad_python_option_is_one_line_naming_it(options: dict[str, Any], message: str) -> None:
    assert message in refused(options)


def test_a_bad_flag_is_named_as_the_flag() -> None:
    assert refused({"port": "eighty"}, origin="flag") == (
        "--port must be an integer between 0 and 65535, not 'eighty'"
    )
    assert refused({"seed_api_keys": "{x"}, origin="flag").startswith("--seed-api-keys is not JSON")
    assert refused({"process_children": "-1"}, origin="flag").startswith("--process-children ")


def test_several_problems_report_the_first_and_count_the_rest() -> None:
    message = refused({"port": "x", "process_children": "0", "max_body_bytes": "0"})
    assert message.startswith("option port must be") and message.endswith("(and 2 more problems)")


def test_settings_errors_are_startup_errors_with_exit_code_2() -> None:
    assert issubclass(SettingsError, StartupError) and issubclass(SettingsError, ValueError)
    assert SettingsError.exit_code == 2 and StartupError.exit_code == 3


# -- absolute paths --------------------------------------------------------------------------


def test_paths_are_absolute_against_the_directory_they_were_built_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load(
        {"sqlite_path": "db/world.db", "certfile": "tls/cert.pem"},
        artifact_dir="../shared/artifacts",
        keyfile="tls/key.pem",
    )
    monkeypatch.chdir("/")  # later directory changes change nothing
    assert settings.data_dir == tmp_path / "data"
    assert settings.sqlite_path == tmp_path / "db" / "world.db"
    assert settings.artifact_dir == tmp_path.parent / "shared" / "artifacts"
    assert settings.code_dir == tmp_path.parent / "shared" / "artifacts" / "unpacked"
    assert settings.certfile == tmp_path / "tls" / "cert.pem"
    assert settings.keyfile == tmp_path / "tls" / "key.pem"
    assert settings.secret_path == tmp_path / "data" / "encryption.key"
    assert settings.dev_key_path == tmp_path / "data" / "dev-api-key"
    for path in (settings.data_dir, settings.sqlite_path, settings.code_dir):
        assert path.is_absolute()


def test_derived_paths_follow_the_configured_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    default = load()
    assert default.sqlite_path == tmp_path / "data" / "compute-worker.db"
    assert default.artifact_dir == tmp_path / "data" / "artifacts"
    assert default.code_dir == tmp_path / "data" / "artifacts" / "unpacked"

    moved = load({"data_dir": "/srv/cw"})
    assert moved.sqlite_path == Path("/srv/cw/compute-worker.db")
    assert moved.code_dir == Path("/srv/cw/artifacts/unpacked")

    # only the database and the artifacts configured: code follows the artifacts, never cwd
    split = load({"sqlite_path": "/var/db/cw.db", "artifact_dir": "/mnt/artifacts"})
    assert split.code_dir == Path("/mnt/artifacts/unpacked")
    assert split.data_dir == tmp_path / "data"

    chosen = load({"artifact_dir": "/mnt/artifacts"}, code_dir="/var/cache/cw-code")
    assert chosen.code_dir == Path("/var/cache/cw-code")


def test_a_home_relative_path_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert load(data_dir="~/cw").data_dir == Path("/home/someone/cw")
