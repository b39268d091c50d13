"""The xos-vo command: the same operations as the API, clear errors, nothing half-done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from vo_service.apikeys.models import ApiKey
from vo_service.db import db
from vo_service.sync.revisions import RevisionLog
from vo_service.users.models import User


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(args=list(args))
        assert (result.exit_code == 0) == ok, result.output
        return result.output
    return run


def test_full_workflow(cli):
    alice = json.loads(cli("user", "create", "alice", "--display-name", "Alice A",
                           "--email", "Alice@Example.org"))
    assert alice["uid"] == 200000 and alice["email"] == "alice@example.org"
    cli("user", "create", "bob", "--display-name", "Bob")
    assert json.loads(cli("vo", "create", "atlas"))["name"] == "atlas"
    assert json.loads(cli("vo", "group", "atlas", "/atlas/analysis"))["unix_name"] \
        == "atlas_analysis"
    assert cli("vo", "role", "atlas", "production").strip() == "/atlas/Role=production"
    cli("vo", "admin", "atlas", "bob")
    cli("member", "add", "atlas", "alice", "--expires-on", "2999-01-01")
    cli("member", "group", "atlas", "/atlas/analysis", "alice")
    assert "suspended" in cli("member", "suspend", "atlas", "alice", "--reason", "test")
    assert "active" in cli("member", "reinstate", "atlas", "alice")
    shown = json.loads(cli("user", "show", "alice"))
    assert shown["memberships"][0]["groups"] == ["/atlas", "/atlas/analysis"]
    assert shown["memberships"][0]["expires_on"] == "2999-01-01"
    node = json.loads(cli("node", "register", "n1.example", "--vo", "atlas"))
    assert node["vos"] == ["atlas"]
    assert json.loads(cli("node", "vos", "n1.example"))["vos"] == []
    assert cli("node", "api-key", "n1.example").startswith("xos_")
    assert cli("user", "api-key", "alice").startswith("xos_")
    listed = cli("user", "list", "--q", "al")
    assert listed.startswith("alice\t200000\tactive")
    assert "bob" not in listed
    assert "intact" in cli("audit", "verify")
    assert cli("audit", "head").split()[0].isdigit()


def test_errors_are_readable_and_change_nothing(cli):
    cli("user", "create", "alice", "--display-name", "Alice")
    revision = RevisionLog(db.session).current()
    users = db.session.scalar(select(func.count()).select_from(User))
    assert "reserved for the system" in cli("user", "create", "root", "--display-name", "R",
                                            ok=False)
    assert "already taken" in cli("user", "create", "alice", "--display-name", "A", ok=False)
    assert "no VO 'nope'" in cli("member", "add", "nope", "alice", ok=False)
    assert "does not match the format" in cli("member", "add", "atlas", "alice",
                                              "--expires-on", "soon", ok=False)
    assert "outside the configured range" in cli("user", "create", "zed", "--display-name",
                                                 "Z", "--uid", "5", ok=False)
    assert db.session.scalar(select(func.count()).select_from(User)) == users
    assert RevisionLog(db.session).current() == revision


def test_demo_is_idempotent_and_prints_a_working_key(cli, api):
    first = cli("demo").strip()
    second = cli("demo").strip()
    assert first != second and first.startswith("xos_")
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 2
    status, vo = api.call("GET", "/vos/demo", second)
    assert status == 200
    assert [g["path"] for g in vo["groups"]] == ["/demo", "/demo/analysis",
                                                 "/demo/analysis/higgs", "/demo/production"]
    status, members = api.call("GET", "/vos/demo/members?status=pending", first)
    assert [m["user"] for m in members["items"]] == ["carol"]


def test_a_missing_setting_is_a_message_not_a_traceback(tmp_path):
    """xos-vo without XOS_SECRET_KEY: one readable line and exit status 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XOS_")}
    env["XOS_INSTANCE_PATH"] = str(tmp_path)
    done = subprocess.run([str(Path(sys.executable).with_name("xos-vo")), "user", "list"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("xos-vo: SECRET_KEY must be set (XOS_SECRET_KEY), at "
                                   "least 32 characters, the same in every service process")
    assert "Traceback" not in done.stderr and done.stdout == ""
