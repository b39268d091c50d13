"""``xos-node sync`` and ``xos-node show`` against the real service: exit codes, one-line
errors, private files, and a daemon that stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from e2e.live import Live, live_service
from node_fixtures import NODE, closed_port, seed_service

import xos_node
from xos_node.cli import main
from xos_node.store import FILE_NAME

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(seed_service, prefix="xos-node-cli-") as service:
        yield service


@pytest.fixture
def key_file(live: Live, tmp_path: Path) -> Path:
    path = tmp_path / "node.key"
    path.write_text(live.app.config["TEST_NODE"].key + "\n")
    path.chmod(0o600)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_sync_once_then_show(live: Live, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    sync = ("sync", "--url", live.base, "--node", NODE, "--key-file", str(key_file),
            "--state-dir", str(state), "--once")
    code, out, err = run(*sync)
    assert code == 0, err
    assert out.startswith(f"snapshot: node {NODE} at revision ")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / FILE_NAME).stat().st_mode) == 0o600
    code, out, err = run(*sync)
    assert code == 0 and out.startswith("unchanged: "), err

    code, out, _ = run("show", "--state-dir", str(state))
    assert code == 0
    assert f"node:     {NODE}" in out and "vos:      atlas" in out
    assert "users:    2 (0 locked)" in out and "groups:   2" in out
    code, out, _ = run("show", "--state-dir", str(state), "--json")
    assert code == 0 and '"users": 2' in out and '"revision": ' in out


def test_sync_once_with_the_service_down_reports_and_keeps_the_snapshot(
        live: Live, key_file: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    common = ("--node", NODE, "--key-file", str(key_file), "--state-dir", state, "--once")
    assert run("sync", "--url", live.base, *common)[0] == 0
    code, out, err = run("sync", "--url", f"http://127.0.0.1:{closed_port()}", *common)
    assert code == os.EX_UNAVAILABLE and out == ""
    assert err.startswith("xos-node: cannot reach the VO service at http://127.0.0.1:")
    assert "(still serving revision " in err and err.count("\n") == 1
    assert run("show", "--state-dir", state)[0] == 0


@pytest.mark.parametrize("mode, content, message", [
    (0o644, None, "is open to others (mode 644); chmod 600"),
    (0o600, "xos_not-a-real-key-but-secret", "does not look like an XOS API key"),
])
def test_a_bad_key_file_is_refused(live: Live, key_file: Path, tmp_path: Path, mode: int,
                                   content: str | None, message: str) -> None:
    if content is not None:
        key_file.write_text(content)
    key_file.chmod(mode)
    code, _, err = run("sync", "--url", live.base, "--node", NODE, "--key-file",
                       str(key_file), "--state-dir", str(tmp_path / "s"), "--once")
    assert code == os.EX_USAGE and message in err
    assert "real-key-but-secret" not in err and live.app.config["TEST_NODE"].key not in err


def test_plain_http_to_another_host_is_refused(key_file: Path, tmp_path: Path) -> None:
    code, _, err = run("sync", "--url", "http://vo.example", "--node", NODE, "--key-file",
                       str(key_file), "--state-dir", str(tmp_path), "--once")
    assert code == os.EX_USAGE and "refusing plain http" in err


def test_show_without_a_snapshot_and_with_a_damaged_one(tmp_path: Path, live: Live,
                                                        key_file: Path) -> None:
    code, _, err = run("show", "--state-dir", str(tmp_path / "none"))
    assert code == os.EX_NOINPUT and "no snapshot in" in err
    state = tmp_path / "state"
    run("sync", "--url", live.base, "--node", NODE, "--key-file", str(key_file),
        "--state-dir", str(state), "--once")
    (state / FILE_NAME).write_text('{"format": "xos-node-snapshot"')
    code, _, err = run("show", "--state-dir", str(state))
    assert code == os.EX_DATAERR and "not complete JSON" in err
    assert err.startswith("xos-node: ") and "Traceback" not in err


def test_the_daemon_syncs_and_stops_on_sigterm(live: Live, key_file: Path,
                                               tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    agent = subprocess.Popen(
        [sys.executable, "-c", "from xos_node.cli import main; main()", "-v", "sync",
         "--url", live.base, "--node", NODE, "--key-file", str(key_file), "--state-dir",
         str(state), "--interval", "0.5", "--wait", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 20
        while not (state / FILE_NAME).exists() and agent.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (state / FILE_NAME).exists()
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=15)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    assert agent.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_the_node_agent_never_loads_the_service() -> None:
    """Compute nodes carry no Flask, SQLAlchemy or VO service code."""
    probe = ("import sys, xos_node, xos_node.cli; print(sorted({m.split('.')[0] for m in"
             " sys.modules} & {'flask', 'vo_service', 'sqlalchemy', 'werkzeug', 'web'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert done.stdout.decode().strip() == "[]"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_shipped_systemd_unit_verifies(tmp_path: Path) -> None:
    """xos_node/systemd/xos-node.service runs ``xos-node run`` and passes systemd's own
    check once its ExecStart points at an installed xos-node."""
    shipped = (Path(xos_node.__file__).parent / "systemd" / "xos-node.service").read_text()
    assert "ExecStart=/opt/xos/.venv/bin/xos-node run --state-dir /var/lib/xos-node" in shipped
    unit = tmp_path / "xos-node.service"
    unit.write_text(shipped.replace("/opt/xos/.venv/bin/xos-node",
                                    str(Path(sys.executable).with_name("xos-node"))))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=60, check=False)
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr
