"""Shared helpers of the benchmark modules: the test harness, statistics, /proc readings."""

import json
import os
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from pgcluster import RUN_DIR, Child, Cluster, free_port, wait_for  # noqa: E402,F401

PG15_CONFIG = os.environ.get("PG15_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
PG17_HOME = os.environ.get("PG17_HOME", "/var/cache/cdc_health/postgresql-17")
PG17_CONFIG = os.path.join(PG17_HOME, "bin", "pg_config")

os.makedirs(RUN_DIR, exist_ok=True)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_until(predicate, timeout=30.0, interval=0.1, what="condition"):
    return wait_for(predicate, timeout=timeout, interval=interval, what=what)


def stop_process(proc, grace):
    """SIGTERM, `grace` seconds to exit, then SIGKILL; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def stats(values):
    """n, median, p95, min, max of a list; None when empty."""
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values),
            "p95": percentile(values, 95), "min": min(values), "max": max(values)}


def timed_query(cur, query, repeat):
    """Client-side time of `query` run and fetched `repeat` times on `cur`, as `stats`."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        cur.execute(query)
        cur.fetchall()
        samples.append(time.perf_counter() - start)
    return stats(samples)


def cpu_seconds(pid):
    """CPU time of a process in seconds: (schedstat run time, utime + stime).

    schedstat has nanosecond resolution; utime + stime (clock ticks) is the classic figure."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns = int(f.read().split()[0])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return run_ns / 1e9, (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return None


def pg_config_ok(pg_config, lib="cdc_health"):
    """True when pg_config exists and the extension's library is installed for it."""
    if not os.path.exists(pg_config):
        return False
    from pgcluster import pg_config_value
    libdir = pg_config_value(pg_config, "--pkglibdir")
    return os.path.exists(os.path.join(libdir, f"{lib}.so"))


# -- sections of BENCHMARKS.md that a benchmark of its own writes between two markers --------

def with_section(old, section, begin, end):
    """`old` markdown with its section between `begin` and `end` replaced by (or extended
    with) `section`, which carries the markers itself."""
    if begin in old:
        head, rest = old.split(begin, 1)
        return head + section + rest.split(end, 1)[1].lstrip("\n")
    return old.rstrip("\n") + "\n\n" + section


def section_of(path, begin, end):
    """The section between `begin` and `end` kept in the markdown at `path`, if any."""
    try:
        text = open(path).read()
    except OSError:
        return None
    if begin not in text:
        return None
    return begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"


def finish(r, name, text, quick):
    """Keeps a benchmark's raw figures in RUN_DIR, prints its section and, unless a quick
    run, writes it into BENCHMARKS.md between its markers."""
    with open(os.path.join(RUN_DIR, f"bench-{name}.json"), "w") as f:
        json.dump(r, f, indent=1, default=str)
    print(text)
    if not quick:
        begin, end = text.split("\n", 1)[0], text.rstrip("\n").rsplit("\n", 1)[1]
        path = os.path.join(ROOT, "BENCHMARKS.md")
        new = with_section(open(path).read(), text, begin, end)
        with open(path, "w") as f:
            f.write(new)
