"""Timing tools: latency statistics, a gunicorn server, HTTP loops, SQL capture and replay.

Every loop is bounded twice, by a number of requests and by a time budget.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP = 3
QUIET_BUSY = 0.15  # machine-wide busy fraction under which we call the machine quiet
QUIET_WAIT = 180.0  # most seconds to wait for quiet before each measurement


@dataclass(frozen=True)
class Budget:
    requests: int
    seconds: float


@dataclass
class Stats:
    """Latencies in milliseconds."""

    samples: list[float] = field(default_factory=list)
    busy: float = math.nan  # machine-wide CPU busy fraction while measuring (1 = all cores)
    waited: float = 0.0  # seconds spent waiting for other load to end first

    def add(self, seconds: float) -> None:
        self.samples.append(seconds * 1000)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan

    def summary(self) -> dict[str, float]:
        n = len(self.samples)
        return {"n": n, "p50": self.percentile(50), "p99": self.percentile(99),
                "mean": sum(self.samples) / n if n else math.nan,
                "max": max(self.samples) if n else math.nan,
                "busy_pct": 100 * self.busy, "waited_s": self.waited}


def cpu_counters() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_since(start: tuple[int, int]) -> float:
    busy, total = cpu_counters()
    return (busy - start[0]) / max(1, total - start[1])


def wait_quiet(limit: float = QUIET_WAIT) -> float:
    """Wait (at most ``limit`` s) until the machine is idle for a second: other work on
    a 2-core machine would be timed too. Return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        mark = cpu_counters()
        time.sleep(1)
        if busy_since(mark) < QUIET_BUSY:
            break
    return max(0.0, time.monotonic() - started - 1)


def timed_loop(call: Callable[[int], Any], budget: Budget, warmup: int = WARMUP,
               quiet_wait: float = QUIET_WAIT) -> Stats:
    """Run ``call(i)`` after ``warmup`` untimed calls until the budget is spent; wait (at
    most ``quiet_wait`` s) for a quiet machine first and record how busy the machine was
    meanwhile."""
    waited = wait_quiet(quiet_wait)
    for i in range(warmup):
        call(i)
    stats = Stats(waited=waited)
    mark = cpu_counters()
    deadline = time.perf_counter() + budget.seconds
    for i in range(budget.requests):
        started = time.perf_counter()
        if i and started > deadline:
            break
        call(i)
        stats.add(time.perf_counter() - started)
    stats.busy = busy_since(mark)
    return stats


# -- HTTP -----------------------------------------------------------------------------
class HttpClient:
    """One connection to the server (http.client reconnects when the server closes)."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def get(self, path: str) -> bytes:
        status, data = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:300]!r}")
        return data

    def close(self) -> None:
        self.connection.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(url: str, instance: str, workers: int, log: str, code: str) -> Iterator[int]:
    """Serve ``vo_service:create_app()`` from the folder ``code`` on 127.0.0.1 (sync
    workers, as scripts/demo.sh does) and yield the port; the server is stopped however
    the block ends."""
    with gunicorn_process(url, instance, workers, log, code) as (port, _pid):
        yield port


@contextmanager
def gunicorn_process(url: str, instance: str, workers: int, log: str, code: str, *,
                     threads: int = 0, public_url: bool = False
                     ) -> Iterator[tuple[int, int]]:
    """:func:`gunicorn`, yielding the port and the master's pid; ``threads`` > 0 runs
    gthread workers (many long-polls held at once, cut after a 3 s grace at the end),
    ``public_url`` sets the service's PUBLIC_URL to the address it listens on."""
    port = free_port()
    env = {**os.environ, "XOS_SQLALCHEMY_DATABASE_URI": url, "XOS_INSTANCE_PATH": instance}
    if public_url:
        env["XOS_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    workers_args = ["--workers", str(workers)]
    if threads:
        workers_args += ["--worker-class", "gthread", "--threads", str(threads),
                         "--timeout", "120", "--graceful-timeout", "3"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *workers_args,
             "--chdir", code, "--log-level", "warning", "vo_service:create_app()"],
            env=env, stdout=out, stderr=out, cwd=code)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    connection.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within 60 s; see {log}")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def http_latency(port: int, key: str, paths: Sequence[str], budget: Budget) -> Stats:
    client = HttpClient(port, key)
    try:
        return timed_loop(lambda i: client.get(paths[i % len(paths)]), budget)
    finally:
        client.close()


@dataclass
class Throughput:
    created: int
    errors: int
    seconds: float
    latency: Stats

    def summary(self) -> dict[str, Any]:
        return {"created": self.created, "errors": self.errors, "seconds": self.seconds,
                "per_second": self.created / self.seconds if self.seconds else math.nan,
                "latency": self.latency.summary()}


def create_users(port: int, key: str, prefix: str, budget: Budget, clients: int
                 ) -> Throughput:
    """POST /api/v1/users from ``clients`` threads until the budget is spent."""
    lock = threading.Lock()
    numbers = iter(range(budget.requests))
    stats, errors = Stats(waited=wait_quiet()), [0]
    mark, started = cpu_counters(), time.perf_counter()
    deadline = started + budget.seconds

    def worker() -> None:
        client = HttpClient(port, key)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                name = f"{prefix}{n:06d}"
                begun = time.perf_counter()
                status, _ = client.call("POST", "/api/v1/users", {
                    "username": name, "display_name": f"Bench {n}",
                    "email": f"{name}@bench.example"})
                elapsed = time.perf_counter() - begun
                with lock:
                    if status == 201:
                        stats.add(elapsed)
                    else:
                        errors[0] += 1
        finally:
            client.close()

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    stats.busy = busy_since(mark)
    return Throughput(len(stats.samples), errors[0], time.perf_counter() - started, stats)


# -- in-process: the Flask pipeline without the network, and the bare SQL ---------------
@dataclass
class Captured:
    """The SQL one request ran: every statement, and the reads for replay."""

    statements: int
    reads: list[tuple[str, Any]]


def capture_call(engine: sa.Engine, call: Callable[[], Any]) -> tuple[Any, Captured]:
    """Run ``call``, recording each statement it executes, and the reads for replay."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               _executemany: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        found = call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    statements = [s for s in seen if not s[0].lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    reads = [s for s in statements if s[0].lstrip().upper().startswith("SELECT")
             and "FOR UPDATE" not in s[0].upper()]
    return found, Captured(len(statements), reads)


def capture(app: Flask, engine: sa.Engine, path: str, headers: dict[str, str]) -> Captured:
    """Run ``path`` through the Flask test client, recording each statement it executes."""
    response, captured = capture_call(
        engine, lambda: app.test_client().get(path, headers=headers))
    if response.status_code != 200:
        raise RuntimeError(f"in-process GET {path}: {response.status_code}")
    return captured


def test_client_latency(app: Flask, paths: Sequence[str], headers: dict[str, str],
                        budget: Budget) -> Stats:
    client = app.test_client()

    def call(i: int) -> None:
        response = client.get(paths[i % len(paths)], headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"in-process GET {paths[i % len(paths)]}: "
                               f"{response.status_code}")

    return timed_loop(call, budget)


def slowest_statement(url: str, request: Captured) -> dict[str, Any]:
    """The read of ``request`` that takes longest (best of three), for the report."""
    engine = sa.create_engine(url)
    best: dict[str, Any] = {"ms": 0.0, "rows": 0, "sql": ""}
    try:
        with engine.connect() as conn:
            for statement, parameters in request.reads:
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    rows = conn.exec_driver_sql(statement, parameters).fetchall()
                    times.append(time.perf_counter() - started)
                if min(times) * 1000 > best["ms"]:
                    best = {"ms": min(times) * 1000, "rows": len(rows),
                            "sql": " ".join(statement.split())}
            conn.rollback()
    finally:
        engine.dispose()
    return best


def replay_latency(url: str, requests: Sequence[Captured], budget: Budget,
                   warmup: int = WARMUP, quiet_wait: float = QUIET_WAIT) -> Stats:
    """Replay each request's reads through SQLAlchemy's driver-level execution, in one
    transaction per request, fetching every row: the bare database cost."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            def call(i: int) -> None:
                for statement, parameters in requests[i % len(requests)].reads:
                    conn.exec_driver_sql(statement, parameters).fetchall()
                conn.rollback()

            return timed_loop(call, budget, warmup, quiet_wait)
    finally:
        engine.dispose()


def save_results(name: str, result: dict[str, Any], text: str) -> None:
    """Write a run's figures to bench/results/<name>.json and .md, and print them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(text)
    print("\n" + text)


def machine_basics() -> dict[str, Any]:
    """What every bench says of the machine: cores, memory, CPU model, Python, kernel."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "memory_gib": round(mem / 2**20, 1), "cpu": cpu,
            "python": platform.python_version(), "kernel": platform.release()}


def machine_with_database(url: str) -> dict[str, Any]:
    """:func:`machine_basics`, and the versions of SQLite, SQLAlchemy and the database."""
    info = {**machine_basics(), "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": sa.__version__}
    if url.startswith("postgresql"):
        info["postgresql"] = scalars(url, "SHOW server_version")[0]
    return info


def scalars(url: str, sql: str | sa.TextClause, **params: Any) -> list[Any]:
    """The first column of a query's rows, on a connection of its own."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            stmt = sa.text(sql) if isinstance(sql, str) else sql
            return list(conn.execute(stmt, params).scalars())
    finally:
        engine.dispose()


@contextlib.contextmanager
def instance_workdir(prefix: str) -> Iterator[str]:
    """A temporary folder that is the service's ``XOS_INSTANCE_PATH`` meanwhile; the
    variable is put back and the folder removed afterwards."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    previous = os.environ.get("XOS_INSTANCE_PATH")
    os.environ["XOS_INSTANCE_PATH"] = workdir
    try:
        yield workdir
    finally:
        if previous is None:
            os.environ.pop("XOS_INSTANCE_PATH", None)
        else:
            os.environ["XOS_INSTANCE_PATH"] = previous
        shutil.rmtree(workdir, ignore_errors=True)
