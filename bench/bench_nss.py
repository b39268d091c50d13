"""Measure getpwnam latency through glibc + nss-systemd + the provider (not a test).

Run as root: ``.venv/bin/python bench/bench_nss.py [N_USERS ...]`` (default 1000 100000).

For each population, a private node (NodeNamespace, as in test_nss_glibc.py) runs
``python -m nss_plugin`` on a snapshot of N users; inside the node, the system python3
times single ``pwd.getpwnam`` calls (perf_counter_ns around each call) on random existing
names, plus getpwuid, a miss, a local user (files only), os.getgrouplist (initgroups, i.e.
GetMemberships + GetGroupRecord) and getgrnam of the all-users group. Each call is a
full NSS lookup: glibc has no cache here (no nscd), and nss-systemd opens a fresh
connection to every socket in /run/systemd/userdb each time. It prints percentiles;
nothing is asserted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "nss"), str(TESTS)]  # the node harness and its fixtures

from nss_fixtures import big_snapshot, provider_node  # noqa: E402

INSIDE = r"""
import grp, json, os, pwd, random, sys, time
n, calls = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(7)
def timed(fn, args):
    out = []
    for a in args:
        t = time.perf_counter_ns(); fn(a); out.append(time.perf_counter_ns() - t)
    out.sort()
    pick = lambda q: out[min(len(out) - 1, int(q * len(out)))] / 1000
    return {"p50_us": pick(0.5), "p90_us": pick(0.9), "p99_us": pick(0.99),
            "max_us": out[-1] / 1000, "calls": len(out)}
names = [f"u{rng.randrange(n):07d}" for _ in range(calls)]
def miss(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        pass
print(json.dumps({
    "getpwnam": timed(pwd.getpwnam, names),
    "getpwuid": timed(pwd.getpwuid, [200000 + rng.randrange(n) for _ in range(calls)]),
    "getpwnam_miss": timed(miss, [f"nosuch{i}" for i in range(calls)]),
    "getpwnam_local_root": timed(pwd.getpwnam, ["root"] * calls),
    "getgrouplist": timed(lambda u: os.getgrouplist(u, 200000), names[: calls // 4]),
    "getgrnam_atlas": timed(grp.getgrnam, ["atlas"] * 20),
}))
"""


def measure(n_users: int, calls: int = 2000) -> dict[str, object]:
    data = big_snapshot(n_users)  # everyone in atlas, every tenth user in atlas_prod
    start = time.monotonic()
    with provider_node(data, extra_args=("--poll", "0")) as node:
        ready = time.monotonic() - start
        result = node.run(["/usr/bin/python3", "-I", "-c", INSIDE, str(n_users), str(calls)],
                          timeout=600)
        assert result.returncode == 0, result.stderr
        figures: dict[str, object] = json.loads(result.stdout)
        figures["provider_ready_s"] = round(ready, 2)
        figures["provider_log"] = [ln for ln in node.log.splitlines() if "serving" in ln]
    return figures


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [1000, 100_000]:
        print(n, json.dumps(measure(n), indent=1), flush=True)
