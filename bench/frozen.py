"""Measure the code of a commit, not the working tree.

A benchmark re-runs itself with ``PYTHONPATH`` pointing at the packages exported from
commit ``--rev`` by ``git archive``, so that edits made while it runs change nothing
and the report can name exactly what was measured.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: every package the service imports, exported together so that versions never mix
PACKAGES = ("vo_service", "ca", "xos_tokens", "web")  # the app factory registers web
CODE_ENV = "XOS_BENCH_CODE"  # set in the re-run that measures a frozen copy of the code


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def run_frozen(rev: str, script: str) -> int:
    """Re-run ``script`` (with this process's arguments) on the packages of ``rev``."""
    commit = git("rev-parse", f"{rev}^{{commit}}")
    code = tempfile.mkdtemp(prefix="xos-bench-code-")
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit,
                                  *PACKAGES], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(code, filter="data")
        env = {**os.environ, "PYTHONPATH": code, CODE_ENV: f"{commit} {code}"}
        child = subprocess.Popen([sys.executable, str(Path(script).resolve()),
                                  *sys.argv[1:]], env=env)
        try:
            return child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=60)
    finally:
        shutil.rmtree(code, ignore_errors=True)


def is_frozen_run() -> bool:
    return CODE_ENV in os.environ


def code_under_test(*modules: ModuleType) -> tuple[str, dict[str, Any]]:
    """The folder the server imports the packages from, and what it holds; in a frozen
    run, checks that ``modules`` really came from the export."""
    if CODE_ENV in os.environ:
        commit, code = os.environ[CODE_ENV].split(" ", 1)
        for module in modules:
            if not module.__file__ or not module.__file__.startswith(code):
                raise RuntimeError(f"{module.__name__} came from {module.__file__}, not {code}")
        return code, {"commit": commit, "source": "git archive of the commit"}
    dirty = bool(git("status", "--porcelain", "--", *PACKAGES))
    return str(ROOT), {"commit": git("rev-parse", "HEAD"),
                       "source": "working tree" + (" with uncommitted changes" if dirty else "")}
