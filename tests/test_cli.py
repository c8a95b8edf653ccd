"""The ``evlog`` command, run as a subprocess with a real config file and environment, against loopback fakes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.datacat_fake import DataCatFake
from support.loopback import RecordingServer, Reply
from support.mcp_fake import McpFake
from support.statsig_fake import KEY, PATH, StatsigFake

COMMANDS = [
    [],
    ["config"],
    ["doctor"],
    ["send"],
    ["tail"],
    ["spool"],
    ["spool", "ls"],
    ["spool", "replay"],
    ["spool", "purge"],
]


def evlog_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m evlog ARGS`` in the current (temporary) directory, with only the given EVLOG_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    return subprocess.run(
        [sys.executable, "-m", "evlog", *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def statsig_toml(endpoint: str, key: str = KEY) -> None:
    Path("evlog.toml").write_text(f'[exporters.statsig]\napi_key = "{key}"\nendpoint = "{endpoint}"\n')


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "evlog")
def test_every_command_has_help(command: list[str]) -> None:
    result = evlog_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: evlog")


def test_config_shows_each_source_and_never_a_whole_secret() -> None:
    statsig_toml("http://127.0.0.1:9/v1/log_event")
    result = evlog_cli("config", "--set", "max_queue_size=50", env={"EVLOG_FLUSH_INTERVAL": "3"})
    assert result.returncode == 0, result.stderr
    lines = {line.split(" = ")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["flush_interval"].endswith("= 3.0  (environment variable EVLOG_FLUSH_INTERVAL)")
    assert lines["max_queue_size"].endswith("= 50  (argument (--set))")
    assert lines["retry_deadline"].endswith("(defaults)")
    assert lines["exporters"].endswith("['statsig']  (evlog.toml)")
    assert lines["exporters.statsig.api_key"].endswith(f"= '***{KEY[-4:]}'  (evlog.toml)")
    assert KEY not in result.stdout + result.stderr


def test_config_json_masks_short_secrets_entirely() -> None:
    statsig_toml("http://127.0.0.1:9/v1/log_event", key="k-123")
    result = evlog_cli("config", "--json")
    assert result.returncode == 0, result.stderr
    options = {row["path"]: row for row in json.loads(result.stdout)["options"]}
    assert options["exporters.statsig.api_key"] == {
        "path": "exporters.statsig.api_key",
        "value": "***",
        "source": "evlog.toml",
        "secret": True,
    }


def test_config_reports_a_bad_value_with_status_2() -> None:
    result = evlog_cli("config", env={"EVLOG_FLUSH_INTERVAL": "abc"})
    assert result.returncode == 2
    assert "flush_interval (from environment variable EVLOG_FLUSH_INTERVAL): expected a number" in result.stderr


def test_doctor_finds_a_misspelt_variable() -> None:
    result = evlog_cli("doctor", env={"EVLOG_FLUSH_INTERVALL": "3"})
    assert result.returncode == 1
    assert "EVLOG_FLUSH_INTERVALL" in result.stdout
    assert "fix: rename it to EVLOG_FLUSH_INTERVAL" in result.stdout


def test_doctor_finds_a_wrong_key() -> None:
    with DataCatFake(api_key="the-right-key-1234") as fake:
        env = {
            "EVLOG_EXPORTERS": "session_server",
            "EVLOG_SESSION_SERVER_URL": fake.url,
            "EVLOG_SESSION_SERVER_PRODUCT": "app",
            "EVLOG_SESSION_SERVER_VERSION": "1.0",
        }
        wrong = evlog_cli("doctor", env={**env, "EVLOG_SESSION_SERVER_API_KEY": "a-wrong-key-5678"})
        right = evlog_cli("doctor", env={**env, "EVLOG_SESSION_SERVER_API_KEY": "the-right-key-1234"})
    assert wrong.returncode == 1
    assert "session server api_key  refused with HTTP 401" in wrong.stdout
    assert "fix: set EVLOG_SESSION_SERVER_API_KEY" in wrong.stdout
    assert "a-wrong-key-5678" not in wrong.stdout
    assert right.returncode == 0, right.stdout
    assert "accepted (HTTP 404)" in right.stdout


def test_doctor_checks_a_statsig_key_with_an_empty_batch_that_records_nothing() -> None:
    fake = StatsigFake()
    with RecordingServer(fake) as server:
        statsig_toml(server.url + PATH, key="not-the-key-0000")
        result = evlog_cli("doctor")
        assert [r.json() for r in server.requests_to(PATH)] == [{"events": []}]
    assert result.returncode == 1
    assert "refused with HTTP 403" in result.stdout


def test_doctor_finds_an_unreachable_endpoint() -> None:
    statsig_toml(f"http://127.0.0.1:{closed_port()}/v1/log_event")
    result = evlog_cli("doctor")
    assert result.returncode == 1
    assert "unreachable" in result.stdout
    assert "api_key" not in result.stdout  # no credential check after the endpoint failed


def test_send_reports_sent_refused_and_failed() -> None:
    with RecordingServer(StatsigFake()) as server:
        statsig_toml(server.url + PATH)
        sent = evlog_cli("send", "signup", "--data", "plan=pro", "--data", "seats=3")
        assert '"plan":"pro"' in server.requests_to(PATH)[0].body.decode() or server.requests_to(PATH)
        statsig_toml(server.url + PATH, key="not-the-key-0000")
        refused = evlog_cli("send", "signup")
    statsig_toml(f"http://127.0.0.1:{closed_port()}/v1/log_event")
    failed = evlog_cli("send", "signup", "--timeout", "1")
    assert (sent.returncode, sent.stdout.strip()) == (0, "statsig: sent"), sent.stderr
    assert refused.returncode == 1
    assert refused.stdout.startswith("statsig: refused: ")
    assert "Invalid API key" in refused.stdout
    assert "not-the-key-0000" not in refused.stdout
    assert failed.returncode == 1
    assert failed.stdout.startswith("statsig: failed (")


def test_send_through_one_named_exporter(tmp_path: Path) -> None:
    result = evlog_cli("send", "hello", "--exporter", "jsonl", env={"EVLOG_JSONL_PATH": str(tmp_path / "out.jsonl")})
    assert (result.returncode, result.stdout.strip()) == (0, "jsonl: sent"), result.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["name"] == "hello"


def test_tail_renders_a_file_without_colour_off_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [
        {"name": "signup", "timestamp": "2026-01-02T03:04:05.678901+00:00", "level": "info", "data": {"plan": "pro"}},
        {"name": "boom", "timestamp": "2026-01-02T03:04:06+00:00", "level": "error", "category": "billing"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    plain = evlog_cli("tail", str(path))
    coloured = evlog_cli("tail", str(path), "--color=always")
    assert plain.returncode == 0
    assert plain.stdout.splitlines() == [
        '2026-01-02 03:04:05.678 INFO     signup {"plan":"pro"}',
        "2026-01-02 03:04:06+00: ERROR    boom [billing]",
    ]
    assert "\033[31m" in coloured.stdout
    assert "\033" not in plain.stdout


def test_tail_of_a_missing_file_fails() -> None:
    result = evlog_cli("tail", "nope.jsonl")
    assert result.returncode == 1
    assert "cannot read nope.jsonl" in result.stderr


def leave_an_orphan_spool(spool: Path, endpoint: str) -> None:
    """A process that spools one event for statsig and dies before delivering it."""
    script = (
        "import os, time, evlog\n"
        f"evlog.configure(exporters={{'statsig': {{'api_key': {KEY!r}, 'endpoint': {endpoint!r}}}}}, "
        f"spool_dir={str(spool)!r}, flush_interval=60)\n"
        "evlog.log_event('kept_on_disk')\n"
        "time.sleep(0.6)\n"
        "os._exit(0)\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    subprocess.run([sys.executable, "-c", script], env=base, check=True, timeout=30)


def test_spool_ls_shows_pending_events_per_exporter_and_purge_removes_them(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    leave_an_orphan_spool(spool, f"http://127.0.0.1:{closed_port()}/v1/log_event")
    env = {"EVLOG_SPOOL_DIR": str(spool)}
    listing = evlog_cli("spool", "ls", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "owner gone" in listing.stdout
    assert "statsig: 1" in listing.stdout
    refused = evlog_cli("spool", "purge", env=env, stdin="n\n")
    assert refused.returncode == 1
    assert list(spool.glob("*.evspool"))
    purged = evlog_cli("spool", "purge", "--yes", env=env)
    assert purged.returncode == 0
    assert "removed 1 file(s)" in purged.stdout
    assert list(spool.iterdir()) == []


def test_spool_replay_delivers_what_a_dead_process_left(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with RecordingServer(StatsigFake()) as server:
        statsig_toml(server.url + PATH)
        server.script(*[Reply(503, {"success": False})] * 3)
        leave_an_orphan_spool(spool, server.url + PATH)
        server.reset()
        result = evlog_cli("spool", "replay", "--timeout", "10", env={"EVLOG_SPOOL_DIR": str(spool)})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "statsig: sent 1" in result.stdout
        assert len(server.requests_to(PATH)) == 1
    assert evlog_cli("spool", "ls", env={"EVLOG_SPOOL_DIR": str(spool)}).stdout.strip() == "no spool files"


def test_spool_without_spool_dir_says_so() -> None:
    result = evlog_cli("spool", "ls")
    assert result.returncode == 2
    assert "spool_dir is not set" in result.stderr


def test_doctor_checks_an_adcp_agent_with_the_handshake_and_says_the_token_is_not_checkable() -> None:
    with McpFake() as fake:
        env = {
            "EVLOG_EXPORTERS": "adcp",
            "EVLOG_ADCP_AGENT_URL": fake.url,
            "EVLOG_ADCP_EVENT_SOURCE_ID": "web",
            "EVLOG_ADCP_TOKEN": "adcp-token-abcdefgh",
        }
        result = evlog_cli("doctor", env=env)
        assert [r.json()["method"] for r in fake.server.requests_to("/mcp") if r.method == "POST"] == ["initialize"]
    assert result.returncode == 0, result.stdout
    assert "AdCP MCP handshake  accepted (HTTP 200)" in result.stdout
    assert "[unchecked] adcp: AdCP token" in result.stdout
    assert "not checkable without sending an event" in result.stdout


def test_doctor_refuses_a_secret_no_header_can_carry() -> None:
    statsig_toml("http://127.0.0.1:9/v1/log_event", key="secret-\u2026")
    result = evlog_cli("doctor")
    assert result.returncode == 1
    assert "exporters.statsig.api_key (from evlog.toml): contains '\u2026' (U+2026)" in result.stdout


def test_send_leaves_other_processes_spools_alone(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    leave_an_orphan_spool(spool, f"http://127.0.0.1:{closed_port()}/v1/log_event")
    result = evlog_cli(
        "send", "hello", "--exporter", "jsonl", env={"EVLOG_SPOOL_DIR": str(spool), "EVLOG_JSONL_PATH": "out.jsonl"}
    )
    assert (result.returncode, result.stdout.strip()) == (0, "jsonl: sent"), result.stderr
    assert len(list(spool.glob("*.evspool"))) == 1


def test_doctor_checks_the_spool_directory(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    leave_an_orphan_spool(spool, f"http://127.0.0.1:{closed_port()}/v1/log_event")
    result = evlog_cli("doctor", env={"EVLOG_SPOOL_DIR": str(spool)})
    assert result.returncode == 0, result.stdout
    assert "is writable; 1 spool file(s) there (evlog spool ls)" in result.stdout


def test_config_warns_about_an_unknown_setting_and_exits_1() -> None:
    Path("evlog.toml").write_text("flush_intervall = 3\n")
    result = evlog_cli("config")
    assert result.returncode == 1
    assert "warning: unknown key flush_intervall in evlog.toml, ignored; did you mean flush_interval?" in result.stderr
