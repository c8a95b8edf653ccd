"""Configuration: precedence (arguments > environment > file > defaults), the file's forms, every ``ConfigError``
path, exporters given as instances or found by entry point, and what the first ``log_event`` does without
``configure()``.

The autouse fixture in conftest clears ``EVLOG_*`` and chdirs to a fresh tmp dir, so ``evlog.toml`` and
``pyproject.toml`` are written in the current directory.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import logging
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evlog
from evlog import Config, ConfigError, DropReason, InvalidEventError
from evlog._api import current_client
from evlog._config import DEFAULTS, OPTION_NAMES, Kind, load_config, option_specs, resolve_config
from evlog.exporters import available_exporters
from evlog.exporters.console import ConsoleExporter
from evlog.exporters.jsonl import JsonlExporter
from evlog.exporters.memory import MemoryExporter


def write(name: str, text: str) -> Path:
    """Write a (dedented) file relative to the test's working directory, which is its tmp dir."""
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(**args: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        evlog.configure(**args)
    return info.value


def only(config: Config) -> Any:
    """The one exporter of a configuration."""
    assert len(config.exporters) == 1, config.exporters
    return config.exporters[0]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def evlog_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("evlog-")]


# --- the Config class itself --------------------------------------------------------------------------------


def test_configure_accepts_every_config_field_and_nothing_else() -> None:
    fields = {f.name for f in attrs.fields(Config)}
    params = inspect.signature(evlog.configure).parameters
    assert set(params) == fields
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in params.values())


def test_configure_takes_one_keyword_per_option_in_declaration_order() -> None:
    # Still true once configure() moves to _api.py: its parameters are Config's fields, nothing else.
    params = inspect.signature(evlog.configure).parameters
    assert tuple(params) == OPTION_NAMES == tuple(f.name for f in attrs.fields(Config))
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in params.values())


def test_every_option_s_names_in_each_source_follow_from_its_field() -> None:
    specs = option_specs()
    assert tuple(spec.name for spec in specs) == OPTION_NAMES
    for spec in specs:
        assert spec.env_var == f"EVLOG_{spec.name.upper()}"
        assert spec.file_key == spec.name
        assert spec.doc, spec.name
    by_name = {spec.name: spec for spec in specs}
    assert (by_name["flush_interval"].type, by_name["flush_interval"].default) == (float, 1.0)
    assert by_name["flush_interval"].accepted == "seconds > 0"
    assert by_name["exporters"].default == ("console",)
    assert (by_name["on_drop"].kind, by_name["before_send"].kind) == (Kind.CALLABLE, Kind.CALLABLES)


def imported_modules(module: ModuleType) -> set[str]:
    """Every module ``module``'s source imports, at the top or inside functions."""
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_import_cycle_between_config_and_the_exporters() -> None:
    # Exporter.__init__ builds its options with _options; if _options reached back to _config or the exporters,
    # the cycle _config -> exporters/_registry -> exporters/_base -> _config would be back.
    from evlog import _options
    from evlog.exporters import _base, _registry

    assert not {m for m in imported_modules(_options) if m.startswith("evlog.exporters") or m == "evlog._config"}
    assert "evlog._config" not in imported_modules(_base) | imported_modules(_registry)


def test_the_readme_table_lists_every_option_with_its_variable() -> None:
    # README.md is built from Config by docs/build_readme.py (test_readme checks it is up to date).
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for spec in option_specs():
        assert any(row.startswith(f"| `{spec.name}` |") and f"`{spec.env_var}`" in row for row in rows), spec.name


def test_every_config_field_has_a_type_a_default_and_a_doc_comment() -> None:
    source = inspect.getsource(Config).splitlines()
    for field in attrs.fields(Config):
        assert field.type is not None, field.name
        assert field.default is not attrs.NOTHING, field.name
        line = next(i for i, text in enumerate(source) if text.strip().startswith(f"{field.name}:"))
        assert source[line - 1].strip().startswith("#:"), f"{field.name} has no '#:' doc comment"


def test_defaults_when_nothing_is_configured() -> None:
    config = evlog.configure()
    assert config.flush_interval == 1.0
    assert config.sample_rate == 1.0
    assert config.disabled is False
    assert isinstance(only(config), ConsoleExporter)
    evlog.shutdown()


# --- precedence for a scalar: argument > environment > evlog.toml > pyproject [tool.evlog] > default ---------


def test_scalar_from_pyproject_tool_evlog() -> None:
    write(
        "pyproject.toml",
        """
        [project]
        name = "app"

        [tool.evlog]
        flush_interval = 4
        """,
    )
    assert evlog.configure().flush_interval == 4.0
    evlog.shutdown()


def test_pyproject_without_tool_evlog_is_not_an_error() -> None:
    write("pyproject.toml", '[project]\nname = "app"\n\n[tool.other]\nflush_interval = "nonsense"\n')
    assert evlog.configure().flush_interval == 1.0
    evlog.shutdown()


@pytest.mark.parametrize("text", ['[tool]\nevlog = "jsonl"\n', "[tool]\nevlog = [1, 2]\n"])
def test_tool_evlog_that_is_not_a_table_is_a_config_error(text: str) -> None:
    write("pyproject.toml", text)
    err = config_error()
    assert (err.path, err.source) == ("tool.evlog", "pyproject.toml")


def test_pyproject_whose_tool_is_not_a_table_is_not_evlog_s_business() -> None:
    write("pyproject.toml", "tool = 1\n")
    assert evlog.configure().flush_interval == 1.0
    evlog.shutdown()


def test_evlog_toml_wins_over_pyproject_and_is_the_only_file_read() -> None:
    write("pyproject.toml", "[tool.evlog]\nflush_interval = 4\nsample_rate = 0.5\n")
    write("evlog.toml", "flush_interval = 3\n")
    config = evlog.configure()
    assert config.flush_interval == 3.0
    # One file is read, not a merge of both: pyproject's sample_rate does not leak in.
    assert config.sample_rate == 1.0
    evlog.shutdown()


def test_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", "flush_interval = 3\nmax_queue_size = 50\n")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "2.5")
    config = evlog.configure()
    assert config.flush_interval == 2.5
    assert config.max_queue_size == 50  # per option: the file still provides what env leaves out
    evlog.shutdown()


def test_argument_wins_over_environment_and_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", "flush_interval = 3\ndisabled = true\n")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "2.5")
    monkeypatch.setenv("EVLOG_DISABLED", "1")
    config = evlog.configure(flush_interval=0.5, disabled=False)
    assert config.flush_interval == 0.5
    assert config.disabled is False  # False is a value, not "not given"
    evlog.shutdown()


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("flush_interval", "2.5", 2.5),
        ("max_queue_size", "7", 7),
        ("shutdown_timeout", "0", 0.0),
        ("retry_deadline", "3", 3.0),
        ("retry_initial_backoff", "0.25", 0.25),
        ("retry_max_backoff", "9", 9.0),
        ("sample_rate", "0.5", 0.5),
        ("disabled", "true", True),
        ("capture_exceptions", "1", True),
    ],
)
def test_every_scalar_option_has_an_environment_variable(option: str, text: str, expected: object) -> None:
    # load_config, not configure(): capture_exceptions=True would install process-wide hooks.
    config = load_config({}, environ={f"EVLOG_{option.upper()}": text})
    assert getattr(config, option) == expected
    assert type(getattr(config, option)) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("0", False), ("false", False), ("no", False),
     ("off", False)],
)  # fmt: skip
def test_boolean_environment_values(text: str, expected: bool) -> None:
    assert load_config({}, environ={"EVLOG_DISABLED": text}).disabled is expected


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from([s for s in option_specs() if s.kind is Kind.VALUE]).flatmap(
        lambda spec: st.tuples(st.just(spec), st.from_type(spec.type))
    )
)
def test_a_value_accepted_from_configure_reads_back_the_same_from_its_variable(pair: tuple[Any, Any]) -> None:
    spec, value = pair
    try:
        expected = getattr(load_config({spec.name: value}, environ={}), spec.name)
    except ConfigError:
        return  # out of range for this option: nothing to compare
    from_env = getattr(
        load_config({}, environ={spec.env_var: repr(value) if spec.type is float else str(value)}), spec.name
    )
    assert from_env == expected
    assert type(from_env) is type(expected)


# --- precedence for an exporter option: configure mapping > EVLOG_JSONL_PATH > [exporters.jsonl] ------------


def test_exporter_option_from_file_table() -> None:
    write("evlog.toml", '[exporters.jsonl]\npath = "from-file.jsonl"\nfsync = true\n')
    exporter = only(evlog.configure())
    assert isinstance(exporter, JsonlExporter)
    assert exporter.options.path == "from-file.jsonl"
    assert exporter.options.fsync is True
    evlog.shutdown()


def test_exporter_option_from_environment_wins_over_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", '[exporters.jsonl]\npath = "from-file.jsonl"\nfsync = true\n')
    monkeypatch.setenv("EVLOG_JSONL_PATH", "from-env.jsonl")
    options = only(evlog.configure()).options
    assert options.path == "from-env.jsonl"
    assert options.fsync is True  # merged per option, not per source
    evlog.shutdown()


def test_exporter_option_from_configure_mapping_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", '[exporters.jsonl]\npath = "from-file.jsonl"\n')
    monkeypatch.setenv("EVLOG_JSONL_PATH", "from-env.jsonl")
    monkeypatch.setenv("EVLOG_JSONL_FSYNC", "yes")
    options = only(evlog.configure(exporters={"jsonl": {"path": "from-arg.jsonl"}})).options
    assert options.path == "from-arg.jsonl"
    assert options.fsync is True
    evlog.shutdown()


def test_file_options_apply_to_an_exporter_selected_by_argument() -> None:
    write("evlog.toml", '[exporters.jsonl]\npath = "from-file.jsonl"\n\n[exporters.memory]\nmax_events = 3\n')
    config = evlog.configure(exporters=["jsonl"])
    assert only(config).options.path == "from-file.jsonl"
    evlog.shutdown()


def test_exporter_environment_options_are_read_for_an_exporter_selected_in_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write("evlog.toml", 'exporters = ["memory"]\n')
    monkeypatch.setenv("EVLOG_MEMORY_MAX_EVENTS", "12")
    exporter = only(evlog.configure())
    assert isinstance(exporter, MemoryExporter)
    assert exporter.options.max_events == 12
    evlog.shutdown()


# --- EVLOG_CONFIG and the forms of `exporters` in the file --------------------------------------------------


def test_evlog_config_names_the_file_to_read(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", "flush_interval = 3\n")
    custom = write("conf/custom.toml", "flush_interval = 7\n[exporters.memory]\n")
    monkeypatch.setenv("EVLOG_CONFIG", str(custom.resolve()))
    config = evlog.configure()
    assert config.flush_interval == 7.0
    assert isinstance(only(config), MemoryExporter)
    evlog.shutdown()


def test_evlog_config_pointing_at_a_missing_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", "flush_interval = 3\n")
    monkeypatch.setenv("EVLOG_CONFIG", "nowhere/evlog.toml")
    err = config_error()
    assert err.source == "environment variable EVLOG_CONFIG"
    assert "nowhere/evlog.toml" in str(err)
    assert "does not exist" in str(err)


def test_exporters_as_a_list_in_the_file() -> None:
    write("evlog.toml", 'exporters = ["jsonl", "memory"]\n')
    config = evlog.configure()
    assert [type(e) for e in config.exporters] == [JsonlExporter, MemoryExporter]
    assert config.exporters[0].options == JsonlExporter.Options()
    evlog.shutdown()


def test_exporters_as_tables_in_the_file_select_them_in_order() -> None:
    write(
        "evlog.toml",
        """
        flush_interval = 2

        [exporters.memory]
        max_events = 5

        [exporters.jsonl]
        path = "out/events.jsonl"
        """,
    )
    config = evlog.configure()
    assert [type(e) for e in config.exporters] == [MemoryExporter, JsonlExporter]
    assert config.exporters[0].options.max_events == 5
    assert config.exporters[1].options.path == "out/events.jsonl"
    evlog.shutdown()


def test_switching_backends_is_a_configuration_change(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", 'exporters = ["console"]\n')
    assert isinstance(only(evlog.configure()), ConsoleExporter)
    monkeypatch.setenv("EVLOG_EXPORTERS", " jsonl , memory ")
    config = evlog.configure()
    assert [e.name for e in config.exporters] == ["jsonl", "memory"]
    evlog.shutdown()


# --- ConfigError: where, from which source, and what is accepted --------------------------------------------


def test_config_error_message_names_path_and_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "abc")
    err = config_error()
    assert isinstance(err, ValueError)
    assert (err.path, err.source) == ("flush_interval", "environment variable EVLOG_FLUSH_INTERVAL")
    assert str(err) == "flush_interval (from environment variable EVLOG_FLUSH_INTERVAL): expected a number, got 'abc'"


def test_unknown_top_level_key_in_evlog_toml_is_one_warning_with_a_did_you_mean(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 16: an unknown file key is one warning (an error under strict), no longer a ConfigError.
    write("evlog.toml", "flush_intervall = 3\n")
    caplog.set_level(logging.WARNING, logger="evlog")
    load_config({})
    warnings = [r.getMessage() for r in caplog.records if r.name == "evlog"]
    assert len(warnings) == 1
    assert "unknown key flush_intervall in evlog.toml, ignored" in warnings[0]
    assert "did you mean flush_interval?" in warnings[0]


def test_unknown_top_level_key_is_an_error_under_strict() -> None:
    write("evlog.toml", "strict = true\nflush_intervall = 3\n")
    err = config_error()
    assert (err.path, err.source) == ("flush_intervall", "evlog.toml")
    assert "did you mean flush_interval?" in str(err)


def test_unknown_key_in_pyproject_tool_evlog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_STRICT", "1")
    write("pyproject.toml", '[tool.evlog]\nexporter = ["jsonl"]\n')
    err = config_error()
    assert (err.path, err.source) == ("exporter", "pyproject.toml [tool.evlog]")
    assert "did you mean exporters?" in str(err)


def test_unknown_variable_is_one_warning_with_a_did_you_mean(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EVLOG_EXPORTER", "statsig")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVALL", "3")
    caplog.set_level(logging.WARNING, logger="evlog")
    load_config({})
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "evlog"]
    assert "EVLOG_EXPORTER, ignored; did you mean EVLOG_EXPORTERS?" in warning
    assert "EVLOG_FLUSH_INTERVALL, ignored; did you mean EVLOG_FLUSH_INTERVAL?" in warning


def test_unknown_variable_is_an_error_under_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTER", "statsig")
    err = config_error(strict=True)
    assert (err.path, err.source) == ("EVLOG_EXPORTER", "environment variable EVLOG_EXPORTER")


def test_options_of_an_unselected_exporter_are_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_STATSIG_TIMEOUT", "soon")
    err = config_error(exporters=["memory"])
    assert (err.path, err.source) == ("exporters.statsig.timeout", "environment variable EVLOG_STATSIG_TIMEOUT")


@pytest.mark.parametrize("secret", ["tok\u2026en", "line\nbreak"])
def test_a_secret_no_http_header_can_carry_is_refused_at_configure(secret: str) -> None:
    err = config_error(
        exporters={"adcp": {"agent_url": "https://seller.example/mcp", "event_source_id": "s", "token": secret}}
    )
    assert err.path == "exporters.adcp.token"
    assert "HTTP header cannot carry" in str(err)
    assert secret not in str(err)


def test_unknown_exporter_option_in_configure_mapping() -> None:
    err = config_error(exporters={"jsonl": {"pth": "x.jsonl"}})
    assert (err.path, err.source) == ("exporters.jsonl.pth", "configure()")
    assert "its options are: fsync, path" in str(err)


def test_unknown_exporter_option_in_file_table() -> None:
    write("evlog.toml", '[exporters.jsonl]\npth = "x.jsonl"\n')
    err = config_error()
    assert (err.path, err.source) == ("exporters.jsonl.pth", "evlog.toml")


def test_misspelt_environment_variable_of_a_selected_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "jsonl")
    monkeypatch.setenv("EVLOG_JSONL_PATHH", "x.jsonl")
    err = config_error()
    assert err.path.startswith("exporters.jsonl")
    assert "environment" in err.source
    assert "EVLOG_JSONL_PATHH" in str(err)
    assert str(err).endswith("its variables are: EVLOG_JSONL_FSYNC, EVLOG_JSONL_PATH")


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"flush_interval": "5"}, "flush_interval"),
        ({"max_queue_size": 1.5}, "max_queue_size"),
        ({"max_queue_size": True}, "max_queue_size"),
        ({"disabled": "yes"}, "disabled"),
        ({"exporters": {"jsonl": {"fsync": "yes"}}}, "exporters.jsonl.fsync"),
        ({"exporters": {"jsonl": {"path": 3}}}, "exporters.jsonl.path"),
        ({"exporters": {"jsonl": ["path"]}}, "exporters.jsonl"),
        ({"exporters": [3]}, "exporters[0]"),
        ({"exporters": 3}, "exporters"),
        ({"on_drop": 3}, "on_drop"),
    ],
)
def test_wrong_type_in_arguments(args: dict[str, Any], path: str) -> None:
    err = config_error(**args)
    assert (err.path, err.source) == (path, "configure()")


@pytest.mark.parametrize(
    ("toml", "path"),
    [
        ('flush_interval = "5"', "flush_interval"),
        ("max_queue_size = 10.0", "max_queue_size"),
        ('capture_exceptions = "yes"', "capture_exceptions"),
        ("[exporters.jsonl]\npath = 3", "exporters.jsonl.path"),
        ("[exporters]\njsonl = 3", "exporters.jsonl"),
        ('exporters = ["jsonl", 3]', "exporters"),
    ],
)
def test_wrong_type_in_file(toml: str, path: str) -> None:
    write("evlog.toml", toml + "\n")
    err = config_error()
    assert (err.path, err.source) == (path, "evlog.toml")


@pytest.mark.parametrize(
    ("env", "path"),
    [
        ({"EVLOG_FLUSH_INTERVAL": "abc"}, "flush_interval"),
        ({"EVLOG_MAX_QUEUE_SIZE": "1.5"}, "max_queue_size"),
        ({"EVLOG_DISABLED": "maybe"}, "disabled"),
        ({"EVLOG_EXPORTERS": "jsonl", "EVLOG_JSONL_FSYNC": "maybe"}, "exporters.jsonl.fsync"),
        ({"EVLOG_EXPORTERS": "memory", "EVLOG_MEMORY_MAX_EVENTS": "many"}, "exporters.memory.max_events"),
    ],
)
def test_unparsable_environment_value(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], path: str) -> None:
    for var, text in env.items():
        monkeypatch.setenv(var, text)
    err = config_error()
    bad_var = list(env)[-1]
    assert (err.path, err.source) == (path, f"environment variable {bad_var}")
    assert repr(env[bad_var]) in str(err)


@pytest.mark.parametrize(
    ("option", "value"),
    [("sample_rate", 2), ("sample_rate", -0.1), ("flush_interval", 0), ("max_queue_size", 0),
     ("shutdown_timeout", -1), ("retry_initial_backoff", 0), ("flush_interval", float("nan"))],
)  # fmt: skip
def test_out_of_range_argument(option: str, value: float) -> None:
    err = config_error(**{option: value})
    assert (err.path, err.source) == (option, "configure()")
    assert "expected" in str(err)


def test_out_of_range_value_in_environment_and_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", "sample_rate = 2\n")
    err = config_error()
    assert (err.path, err.source) == ("sample_rate", "evlog.toml")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "0")
    write("evlog.toml", "")
    err = config_error()
    assert (err.path, err.source) == ("flush_interval", "environment variable EVLOG_FLUSH_INTERVAL")


@pytest.mark.parametrize(
    ("source", "setup"),
    [
        ("configure()", {"arg": {"memory": {"max_events": -1}}}),
        ("environment variable EVLOG_MEMORY_MAX_EVENTS", {"env": "-1"}),
        ("evlog.toml", {"file": "[exporters.memory]\nmax_events = -1\n"}),
    ],
)
def test_exporter_option_rejected_by_its_validator_names_the_option_and_its_source(
    monkeypatch: pytest.MonkeyPatch, source: str, setup: dict[str, Any]
) -> None:
    if "env" in setup:
        monkeypatch.setenv("EVLOG_MEMORY_MAX_EVENTS", setup["env"])
    if "file" in setup:
        write("evlog.toml", setup["file"])
    err = config_error(exporters=setup.get("arg", ["memory"]))
    assert (err.path, err.source) == ("exporters.memory.max_events", source)
    assert "-1" in str(err)


STATSIG_KEY = "secret-evlog-config-test-key"
PLAIN_HTTP = "http://statsig.example.com/v1/log_event"


@pytest.mark.parametrize(
    ("source", "setup"),
    [
        ("configure()", {"arg": {"statsig": {"api_key": STATSIG_KEY, "endpoint": PLAIN_HTTP}}}),
        (
            "environment variable EVLOG_STATSIG_ENDPOINT",
            {
                "env": {
                    "EVLOG_EXPORTERS": "statsig",
                    "EVLOG_STATSIG_API_KEY": STATSIG_KEY,
                    "EVLOG_STATSIG_ENDPOINT": PLAIN_HTTP,
                }
            },
        ),
        ("evlog.toml", {"file": f'[exporters.statsig]\napi_key = "{STATSIG_KEY}"\nendpoint = "{PLAIN_HTTP}"\n'}),
    ],
)
def test_a_validator_that_reads_another_option_names_its_own_option_once_with_its_source(
    monkeypatch: pytest.MonkeyPatch, source: str, setup: dict[str, Any]
) -> None:
    # statsig's endpoint check reads allow_insecure_http from the instance, and raises a ConfigError itself.
    for var, text in setup.get("env", {}).items():
        monkeypatch.setenv(var, text)
    if "file" in setup:
        write("evlog.toml", setup["file"])
    err = config_error(exporters=setup.get("arg"))
    assert (err.path, err.source) == ("exporters.statsig.endpoint", source)
    assert str(err).startswith(f"exporters.statsig.endpoint (from {source}): refusing plain http")
    assert str(err).count("exporters.statsig") == 1
    assert STATSIG_KEY not in str(err)


def test_a_constructor_argument_refused_by_a_validator_names_its_option() -> None:
    from evlog.exporters.statsig import StatsigExporter

    with pytest.raises(ConfigError) as info:
        StatsigExporter(api_key=STATSIG_KEY, endpoint=PLAIN_HTTP)
    assert (info.value.path, info.value.source) == ("exporters.statsig.endpoint", "constructor arguments")
    assert str(info.value).count("exporters.statsig") == 1


def test_the_cross_field_opt_in_is_read_from_its_own_source(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", f'[exporters.statsig]\napi_key = "{STATSIG_KEY}"\nendpoint = "{PLAIN_HTTP}"\n')
    monkeypatch.setenv("EVLOG_STATSIG_ALLOW_INSECURE_HTTP", "1")
    config = load_config({})
    assert only(config).options.endpoint == PLAIN_HTTP


def test_a_config_error_raised_after_init_names_the_option_it_points_at() -> None:
    write("evlog.toml", '[exporters.adcp]\nagent_url = "http://seller.example.com/mcp"\nevent_source_id = "web"\n')
    err = config_error()
    assert (err.path, err.source) == ("exporters.adcp.agent_url", "evlog.toml")
    assert str(err).startswith("exporters.adcp.agent_url (from evlog.toml): refusing plain http")


def test_a_cross_field_error_names_the_exporter_and_every_source_involved(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", '[exporters.coveo]\norg_id = "myorg"\n')
    monkeypatch.setenv("EVLOG_COVEO_LANGUAGE", "fr")
    err = config_error()
    assert (err.path, err.source) == ("exporters.coveo", "evlog.toml, environment variable EVLOG_COVEO_LANGUAGE")
    assert err.reason.startswith("set access_token (EVLOG_COVEO_ACCESS_TOKEN)")


def test_config_error_reason_is_the_message_without_where() -> None:
    err = ConfigError("expected a number", path="flush_interval", source="configure()")
    assert str(err) == "flush_interval (from configure()): expected a number"
    assert err.reason == "expected a number"


# --- where each value came from --------------------------------------------------------------------------------


def test_resolve_config_says_where_each_value_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    write("evlog.toml", 'sample_rate = 0.5\n[exporters.jsonl]\npath = "from-file.jsonl"\n')
    monkeypatch.setenv("EVLOG_JSONL_FSYNC", "1")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "2")
    config, where = resolve_config({"flush_interval": 0.5, "disabled": None})
    assert (config.flush_interval, config.sample_rate) == (0.5, 0.5)
    assert where["flush_interval"] == "configure()"
    assert where["sample_rate"] == "evlog.toml"
    assert where["disabled"] == DEFAULTS
    assert where["exporters"] == "evlog.toml"
    assert where["exporters.jsonl.path"] == "evlog.toml"
    assert where["exporters.jsonl.fsync"] == "environment variable EVLOG_JSONL_FSYNC"
    assert set(OPTION_NAMES) <= set(where)


def test_load_config_refuses_a_name_that_is_not_an_option() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"flush_intervall": 1.0})
    assert (info.value.path, info.value.source) == ("flush_intervall", "configure()")


def test_an_overridden_environment_value_is_not_read() -> None:
    # One walk per option: only the winning source is parsed, whatever the option.
    environ = {"EVLOG_FLUSH_INTERVAL": "abc", "EVLOG_MEMORY_MAX_EVENTS": "many"}
    config = load_config({"flush_interval": 2.0, "exporters": {"memory": {"max_events": 3}}}, environ=environ)
    assert (config.flush_interval, only(config).options.max_events) == (2.0, 3)


@pytest.mark.parametrize(
    ("arg", "env", "source"),
    [
        (["jsonl", "memory", "jsonl"], None, "configure()"),
        (None, "memory,memory", "environment variable EVLOG_EXPORTERS"),
        (None, None, "evlog.toml"),
    ],
)
def test_exporter_listed_twice(
    monkeypatch: pytest.MonkeyPatch, arg: list[str] | None, env: str | None, source: str
) -> None:
    if env is not None:
        monkeypatch.setenv("EVLOG_EXPORTERS", env)
    write("evlog.toml", 'exporters = ["console", "console"]\n')  # used only when neither of the above is set
    err = config_error(exporters=arg)
    assert (err.path, err.source) == ("exporters", source)
    assert "listed twice" in str(err)


def test_exporters_as_a_plain_string_argument_is_refused() -> None:
    err = config_error(exporters="jsonl")
    assert (err.path, err.source) == ("exporters", "configure()")
    assert "exporters=['jsonl']" in str(err)


def test_exporters_as_a_plain_string_in_the_file_is_refused() -> None:
    write("evlog.toml", 'exporters = "jsonl"\n')
    err = config_error()
    assert (err.path, err.source) == ("exporters", "evlog.toml")


@pytest.mark.parametrize("filename", ["evlog.toml", "pyproject.toml"])
def test_invalid_toml(filename: str) -> None:
    write(filename, "[tool.evlog]\nflush_interval = = 1\n")
    err = config_error()
    assert err.source == filename
    assert "not valid TOML" in str(err)


@pytest.mark.parametrize(
    ("toml", "path"),
    [
        ('on_drop = "no_such_module_for_evlog_tests:record"', "on_drop"),
        ('on_drop = "no colon here"', "on_drop"),
        ('before_send = ["json:dumps", "json:no_such_function"]', "before_send[1]"),
        ('before_send = ["json:__doc__"]', "before_send[0]"),
    ],
)
def test_bad_callable_in_file(toml: str, path: str) -> None:
    write("evlog.toml", toml + "\n")
    err = config_error()
    assert (err.path, err.source) == (path, "evlog.toml")


# --- exporters given in code, and third-party exporters by entry point --------------------------------------


def test_exporter_instances_passed_in_code_are_used_as_they_are() -> None:
    memory = MemoryExporter(max_events=10)
    config = evlog.configure(exporters=[memory, "jsonl"], flush_interval=0.05)
    assert config.exporters[0] is memory
    assert isinstance(config.exporters[1], JsonlExporter)
    evlog.log_event("from_code")
    assert evlog.flush(5)
    assert [e.name for e in memory.events] == ["from_code"]
    evlog.shutdown()


def test_exporter_class_passed_in_code_is_built_from_configuration() -> None:
    write("evlog.toml", "[exporters.memory]\nmax_events = 4\n")
    exporter = only(evlog.configure(exporters=[MemoryExporter]))
    assert isinstance(exporter, MemoryExporter)
    assert exporter.options.max_events == 4
    evlog.shutdown()


def test_exporter_constructor_arguments_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        MemoryExporter(max_event=3)
    assert (info.value.path, info.value.source) == ("exporters.memory.max_event", "constructor arguments")


PLUGIN_SOURCE = '''
"""A third-party exporter, installed as its own distribution."""
import attrs
from evlog import Exporter, ExportResult


@attrs.frozen
class FakeOptions:
    greeting: str = "hi"


class FakeExporter(Exporter):
    name = "fake"
    Options = FakeOptions
    exported: list = []

    def export(self, batch):
        FakeExporter.exported.extend(e.name for e in batch.events)
        return ExportResult.success()
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A distribution made on the fly whose entry points register exporters with evlog."""
    site = tmp_path / "site"
    (site / "fake_evlog_plugin-0.0.dist-info").mkdir(parents=True)
    (site / "fake_evlog_plugin-0.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-evlog-plugin\nVersion: 0.0\n", encoding="utf-8"
    )
    (site / "fake_evlog_plugin-0.0.dist-info" / "entry_points.txt").write_text(
        "[evlog.exporters]\n"
        "fake = fake_evlog_plugin:FakeExporter\n"
        "not_an_exporter = fake_evlog_plugin:FakeOptions\n"
        "broken = fake_evlog_plugin_missing_module:Exporter\n",
        encoding="utf-8",
    )
    (site / "fake_evlog_plugin.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    monkeypatch.delitem(sys.modules, "fake_evlog_plugin", raising=False)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return importlib.import_module("fake_evlog_plugin")


def test_third_party_exporter_is_found_by_entry_point(plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "fake" in available_exporters()
    monkeypatch.setenv("EVLOG_FAKE_GREETING", "hello")
    config = evlog.configure(exporters=["fake"], flush_interval=0.05)
    exporter = only(config)
    assert isinstance(exporter, plugin.FakeExporter)
    assert exporter.options.greeting == "hello"
    evlog.log_event("via_plugin")
    assert evlog.flush(5)
    assert plugin.FakeExporter.exported == ["via_plugin"]
    evlog.shutdown()


def test_third_party_exporter_selected_by_environment(plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "fake,memory")
    config = evlog.configure()
    assert [type(e) for e in config.exporters] == [plugin.FakeExporter, MemoryExporter]
    evlog.shutdown()


def test_entry_point_that_is_not_an_exporter_is_a_config_error(plugin: ModuleType) -> None:
    err = config_error(exporters=["not_an_exporter"])
    assert (err.path, err.source) == ("exporters[0]", "configure()")
    assert "not an evlog Exporter subclass" in str(err)


def test_entry_point_whose_module_is_missing_is_an_exporter_error(plugin: ModuleType) -> None:
    with pytest.raises(evlog.ExporterError, match="'broken' could not be imported"):
        evlog.configure(exporters=["broken"])


# --- processors named in the file ---------------------------------------------------------------------------

HOOKS_SOURCE = """
drops = []


def scrub(event):
    return None if event.name == "secret" else event


def record(drop):
    drops.append(drop)
"""


def test_before_send_and_on_drop_as_module_function_strings_in_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks_dir = tmp_path / "hooks"
    hooks_dir.mkdir()
    (hooks_dir / "evlog_test_hooks.py").write_text(HOOKS_SOURCE, encoding="utf-8")
    monkeypatch.delitem(sys.modules, "evlog_test_hooks", raising=False)
    monkeypatch.syspath_prepend(str(hooks_dir))
    write("evlog.toml", 'before_send = ["evlog_test_hooks:scrub"]\non_drop = "evlog_test_hooks:record"\n')
    memory = MemoryExporter()
    config = evlog.configure(exporters=[memory], flush_interval=0.05)
    hooks = sys.modules["evlog_test_hooks"]
    assert config.before_send == (hooks.scrub,)
    assert config.on_drop is hooks.record
    evlog.log_event("secret")
    evlog.log_event("public")
    assert evlog.flush(5)
    assert [e.name for e in memory.events] == ["public"]
    assert [(d.reason, d.count) for d in hooks.drops] == [(DropReason.BEFORE_SEND, 1)]
    evlog.shutdown()


def test_before_send_from_environment_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_BEFORE_SEND", "json:dumps, json:loads")
    assert evlog.configure().before_send == (json.dumps, json.loads)
    evlog.shutdown()


# --- disabled, and the first log_event without configure() -------------------------------------------------


def test_disabled_makes_log_event_a_no_op_that_still_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Path("events.jsonl")
    monkeypatch.setenv("EVLOG_DISABLED", "1")
    monkeypatch.setenv("EVLOG_EXPORTERS", "jsonl")
    monkeypatch.setenv("EVLOG_JSONL_PATH", str(out))
    evlog.log_event("ignored", data={"n": 1})
    with pytest.raises(InvalidEventError):
        evlog.log_event("")
    with pytest.raises(InvalidEventError):
        evlog.log_event("bad_level", level="loud")
    assert evlog.flush(5)
    assert evlog_threads() == []
    assert not out.exists()


def test_first_log_event_configures_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Path("logs/events.jsonl")
    monkeypatch.setenv("EVLOG_EXPORTERS", "jsonl")
    monkeypatch.setenv("EVLOG_JSONL_PATH", str(out))
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "0.05")
    assert current_client() is None
    evlog.log_event("first", category="boot", data={"n": 1})
    assert evlog.flush(5)
    [line] = read_lines(out)
    assert (line["name"], line["category"], line["data"]) == ("first", "boot", {"n": 1})
    evlog.shutdown()


def test_first_log_event_configures_from_evlog_toml() -> None:
    write("evlog.toml", 'flush_interval = 0.05\n[exporters.jsonl]\npath = "from-toml.jsonl"\n')
    evlog.log_event("from_file")
    assert evlog.flush(5)
    assert [line["name"] for line in read_lines(Path("from-toml.jsonl"))] == ["from_file"]
    evlog.shutdown()


@pytest.mark.parametrize("explicit", [True, False])
def test_a_bad_setting_is_the_same_config_error_with_or_without_configure(
    monkeypatch: pytest.MonkeyPatch, explicit: bool
) -> None:
    # Issue 16: without configure(), the first log_event used to log the error and fall back to the console.
    monkeypatch.setenv("EVLOG_EXPORTERS", "jsonl,nope")
    with pytest.raises(ConfigError) as info:
        evlog.configure() if explicit else evlog.log_event("first")
    assert (info.value.path, info.value.source) == ("exporters[1]", "environment variable EVLOG_EXPORTERS")
    assert current_client() is None


def test_a_broken_file_is_the_same_config_error_without_configure() -> None:
    write("evlog.toml", "flush_interval = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        evlog.log_event("first")
    assert current_client() is None


def test_an_empty_exporter_list_is_refused_rather_than_losing_events() -> None:
    with pytest.raises(ConfigError) as info:
        evlog.configure(exporters=[])
    assert info.value.path == "exporters"
    assert "disabled" in str(info.value)


def test_a_misspelt_exporter_table_is_an_error_even_when_the_environment_selects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "evlog.toml").write_text('[exporters.jsonll]\npath = "x.jsonl"\n')
    monkeypatch.setenv("EVLOG_EXPORTERS", "console")
    with pytest.raises(ConfigError) as info:
        evlog.configure()
    assert info.value.path == "exporters.jsonll"
    assert "available exporters" in str(info.value)
