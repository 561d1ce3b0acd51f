"""The benchmark suite: every topic of issue 6 on real throwaway clusters, cdc_health and its
peer (postgres_exporter + Prometheus, or the plain catalog query) in the same run, written to
BENCHMARKS.md with the machine, versions, settings and date.

    /usr/bin/python3 bench/run.py            # full run, about 20 minutes on 2 cores
    /usr/bin/python3 bench/run.py --quick    # smoke run of a few minutes; figures not representative

Needs root (clusters run as user postgres through runuser), the extension installed into the
system PostgreSQL 15 (and into $PG17_HOME for the PostgreSQL 17 part), Debian's
prometheus and prometheus-postgres-exporter. Raw results also go to --json.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback

import common
from common import PG15_CONFIG, PG17_CONFIG, ROOT, log, pg_config_ok
import detection
import function_latency
import history_reads
import consumers
import delivery
import wal_volume
import metrics_endpoint
import mirror_probe as mirror_probe_bench
import overhead
import peer
import report
import scale
import slot_creation

FULL = {
    "detection": {"intervals": ["1s", "10s"], "trials": 20, "spread": 40.0, "parallel": False},
    "overhead": {"slots": [10, 100, 500], "intervals": ["1s", "10s"], "window": 150.0,
                 "windows": 5, "autovacuum_wait": 70.0, "settle_wait": 80.0},
    "function_latency": {"slots": [10, 100, 500, 1000], "repeat": 200},
    "history": {"days": 14, "slots": 100, "repeat": 30},
    "scale": {"slots": [10, 100, 500, 1000, 2000], "window": 30.0, "repeat": 100},
    "slot_creation": {"trials": 16},
    "mirror_probe": {"rows": [1_000_000, 10_000_000], "trials": 15, "naive_trials": 1},
}
QUICK = {
    "detection": {"intervals": ["1s"], "trials": 3, "spread": 8.0, "parallel": True},
    "overhead": {"slots": [10, 100], "intervals": ["1s", "10s"], "window": 40.0, "windows": 2,
                 "autovacuum_wait": 0.0, "settle_wait": 0.0},
    "function_latency": {"slots": [10, 100], "repeat": 20},
    "history": {"days": 1, "slots": 10, "repeat": 5},
    "scale": {"slots": [10, 100], "window": 5.0, "repeat": 10},
    "slot_creation": {"trials": 2},
    "mirror_probe": {"rows": [1_000_000], "trials": 3, "naive_trials": 1},
}
TOPICS = ["detection", "overhead", "function_latency", "scale", "history", "mirror_probe",
          "slot_creation"]


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    debian = sh(["cat", "/etc/debian_version"])
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": mem_kb / 2**20,
            "kernel": platform.release(), "os": f"Debian {debian}" if debian else platform.platform(),
            "loadavg_start": os.getloadavg()}


def library(pg_config):
    from pgcluster import pg_config_value
    path = os.path.join(pg_config_value(pg_config, "--pkglibdir"), "cdc_health.so")
    if not os.path.exists(path):
        return None
    st = os.stat(path)
    return {"path": path, "size": st.st_size,
            "mtime": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC")}


def versions():
    head = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    import psycopg2
    out = {"postgresql_15": sh([PG15_CONFIG, "--version"]),
           "postgresql_17": sh([PG17_CONFIG, "--version"]) if os.path.exists(PG17_CONFIG) else None,
           "prometheus": peer.version(peer.PROMETHEUS),
           "postgres_exporter": sh(["dpkg-query", "-W", "-f", "${Version}",
                                    "prometheus-postgres-exporter"]),
           "prometheus_deb": sh(["dpkg-query", "-W", "-f", "${Version}", "prometheus"]),
           "python": platform.python_version(), "psycopg2": psycopg2.__version__.split()[0],
           "git_head": head + (" (with uncommitted changes)" if dirty else ""),
           "git_subject": sh(["git", "-C", ROOT, "log", "-1", "--format=%s"]),
           "cdc_health_15": library(PG15_CONFIG),
           "cdc_health_17": library(PG17_CONFIG) if os.path.exists(PG17_CONFIG) else None}
    return out


def mirror_probe(params):
    """Topic 5: one freshness probe through the ClickHouse wrapper against curl."""
    log("  mirror probe")
    return mirror_probe_bench.measure(PG15_CONFIG, params["rows"], params["trials"],
                                      params["naive_trials"])


def run_topic(name, params, quick):
    if name == "detection":
        out = []
        for interval in params["intervals"]:
            out.append(detection.measure(PG15_CONFIG, interval, params["trials"],
                                         params["spread"], parallel=params["parallel"]))
        return out
    if name == "overhead":
        return overhead.measure(PG15_CONFIG, params["slots"], params["intervals"],
                                params["window"], params["windows"], params["autovacuum_wait"],
                                params["settle_wait"])
    if name == "function_latency":
        log("  function latency")
        return function_latency.measure(PG15_CONFIG, params["slots"], params["repeat"])
    if name == "scale":
        log("  scale")
        rows = scale.measure(PG15_CONFIG, params["slots"], params["window"], params["repeat"])
        return [{**r, "window": params["window"]} for r in rows]
    if name == "history":
        return history_reads.measure(PG15_CONFIG, params["days"], params["slots"],
                                     params["repeat"])
    if name == "mirror_probe":
        return mirror_probe(params)
    if name == "slot_creation":
        out = {}
        for version, pg_config in (("15", PG15_CONFIG), ("17", PG17_CONFIG)):
            if quick and version == "17":
                continue
            if not pg_config_ok(pg_config):
                out[version] = {"skipped": f"no cdc_health installed for {pg_config}"}
                continue
            log(f"  slot creation on {version}")
            out[version] = slot_creation.measure(pg_config, params["trials"])
        return out
    raise ValueError(name)


def write_report(results, out):
    """Renders the results into `out`, keeping the sections other benches wrote there."""
    text = report.render(results)
    kept = metrics_endpoint.section_of(out)  # written by bench/metrics_endpoint.py
    if kept:
        text = metrics_endpoint.with_section(text, kept)
    for bench in (delivery, consumers, wal_volume):  # their own benchmarks' sections
        kept = common.section_of(out, bench.BEGIN, bench.END)
        if kept:
            text = common.with_section(text, kept, bench.BEGIN, bench.END)
    with open(out, "w") as f:
        f.write(text)


def merged(path, rerun):
    """The saved result at `path` with `rerun`'s topics in place of its own."""
    with open(path) as f:
        base = json.load(f)
    base["topics"].update(rerun["topics"])
    for name in rerun["topics"]:
        base["errors"].pop(name, None)
    base["errors"].update(rerun["errors"])
    base.setdefault("reruns", []).append({
        "topics": sorted(rerun["topics"]), "date": rerun["date"],
        "seconds": rerun["seconds"], "git_head": rerun["versions"]["git_head"],
        "git_subject": rerun["versions"]["git_subject"],
        "library_changed": rerun["library_changed"]})
    return base


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run of a few minutes")
    parser.add_argument("--out", default=None,
                        help="markdown to write (default: BENCHMARKS.md for a full run of every "
                             "topic, else /var/tmp/cdc_health/BENCHMARKS.quick.md or "
                             "BENCHMARKS.partial.md)")
    parser.add_argument("--json", default=None, help="raw results (default: next to --out)")
    parser.add_argument("--only", nargs="+", choices=TOPICS, help="run these topics only")
    parser.add_argument("--render", metavar="JSON", help="only re-render a saved raw result")
    parser.add_argument("--into", metavar="JSON",
                        help="with --only: replace those topics in a saved full result and "
                             "render it (the report says which topics were re-run, when and "
                             "from which commit)")
    args = parser.parse_args()
    if args.into and not args.only:
        parser.error("--into needs --only")
    if args.into:
        args.out = args.out or os.path.join(ROOT, "BENCHMARKS.md")
        args.json = args.json or args.into
    if args.out is None:
        # Only a complete full run replaces the repository's BENCHMARKS.md by default.
        args.out = (os.path.join(common.RUN_DIR, "BENCHMARKS.quick.md") if args.quick
                    else os.path.join(common.RUN_DIR, "BENCHMARKS.partial.md") if args.only
                    else os.path.join(ROOT, "BENCHMARKS.md"))
    if args.json is None:
        args.json = os.path.join(common.RUN_DIR, "bench-quick.json" if args.quick
                                 else "bench-partial.json" if args.only else "bench-full.json")
    if args.render:
        with open(args.render) as f:
            results = json.load(f)
        write_report(results, args.out)
        print(args.out)
        return 0
    if os.geteuid() != 0:
        print("bench/run.py needs root: clusters are started as user postgres", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C: every cluster, consumer, exporter and Prometheus started
    # so far is stopped by the finally blocks that started it.
    signal.signal(signal.SIGTERM, interrupted)
    params = QUICK if args.quick else FULL
    started = time.time()
    results = {"mode": "quick" if args.quick else "full", "params": params,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": machine(), "versions": versions(), "topics": {}, "errors": {},
               "command": "/usr/bin/python3 bench/run.py" + (" --quick" if args.quick else "")}
    failed = False
    for name in TOPICS:
        if args.only and name not in args.only:
            continue
        log(f"{name} ...")
        t0 = time.time()
        try:
            results["topics"][name] = {"data": run_topic(name, params.get(name, {}), args.quick),
                                       "seconds": time.time() - t0,
                                       "loadavg": os.getloadavg()}
        except Exception:
            failed = True
            results["errors"][name] = traceback.format_exc()
            log(f"{name} FAILED:\n{results['errors'][name]}")
        log(f"{name} done in {time.time() - t0:.0f}s")
    results["seconds"] = time.time() - started
    results["machine"]["loadavg_end"] = os.getloadavg()
    after = versions()
    results["library_changed"] = (after["cdc_health_15"] != results["versions"]["cdc_health_15"])
    if args.into:
        results = merged(args.into, results)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1, default=str)
    write_report(results, args.out)
    log(f"wrote {args.out} and {args.json} in {results['seconds'] / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
