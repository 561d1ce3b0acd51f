"""The /metrics endpoint against postgres_exporter, in one run on one cluster:

1. scrape latency and server CPU per scrape at 10, 100 and 1000 slots;
2. fault (a slot lost at a CHECKPOINT) to firing alert in one Prometheus, through
   cdc_health's metrics (contrib rule CdcHealthSlotLost) and through postgres_exporter's
   (the SlotLost rule of bench/peer.py), same scrape and evaluation intervals.

    /usr/bin/python3 bench/metrics_endpoint.py            # about 6 minutes
    /usr/bin/python3 bench/metrics_endpoint.py --quick    # smoke run

Writes its section of BENCHMARKS.md (between the metrics markers; bench/run.py keeps it).
Needs root, the extension installed into the system PostgreSQL 15, Debian's prometheus and
prometheus-postgres-exporter.
"""

import argparse
import datetime
import json
import os
import random
import sys
import time
import urllib.request

import common
from common import PG15_CONFIG, ROOT, Cluster, free_port, log, stats, wait_until
import peer
from promstack import CONTRIB, Prometheus  # tests/, on the path through common

BEGIN, END = "<!-- metrics_endpoint:begin -->", "<!-- metrics_endpoint:end -->"
LOST_RULE = "pg_replication_slots_pg_wal_lsn_diff != pg_replication_slots_pg_wal_lsn_diff"


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def server_cpu(pg):
    """CPU seconds of every process of the cluster (postmaster and children) so far."""
    total = 0.0
    pids = [int(open(os.path.join(pg.datadir, "postmaster.pid")).readline())]
    with open(f"/proc/{pids[0]}/task/{pids[0]}/children") as f:
        pids += [int(p) for p in f.read().split()]
    for pid in pids:
        cpu = common.cpu_seconds(pid)
        if cpu:
            total += cpu[0]
    return total


def scrape_costs(pg, exporter, endpoint, scrapes):
    """Per scrape: wall times and the cluster's CPU (less an idle window of the same length)."""
    out = {}
    for name, url, extra_pid in [("cdc_health", endpoint, None),
                                 ("postgres_exporter", f"http://{exporter.target}/metrics",
                                  exporter.proc.pid)]:
        get(url)  # warm: the exporter connects on its first scrape
        times, t0 = [], time.perf_counter()
        cpu0, ex0 = server_cpu(pg), extra_pid and common.cpu_seconds(extra_pid)[0]
        size = 0
        for _ in range(scrapes):
            start = time.perf_counter()
            size = len(get(url))
            times.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - t0
        cpu = server_cpu(pg) - cpu0
        ex = extra_pid and common.cpu_seconds(extra_pid)[0] - ex0
        # The idle baseline: the same cluster doing nothing for as long.
        idle0 = server_cpu(pg)
        time.sleep(elapsed)
        idle = server_cpu(pg) - idle0
        out[name] = {"latency": stats(times), "bytes": size,
                     "server_cpu_ms_per_scrape": max(0.0, cpu - idle) * 1000 / scrapes,
                     "exporter_cpu_ms_per_scrape": (ex * 1000 / scrapes) if ex else None}
    return out


def part_scrapes(slot_counts, scrapes):
    results = {}
    for n in slot_counts:
        port = free_port()
        pg = Cluster(PG15_CONFIG, name=f"bench-metrics-{n}", settings={
            "shared_preload_libraries": "'cdc_health'",
            "cdc_health.metrics_address": f"'127.0.0.1:{port}'",
            "cdc_health.max_tracked_slots": str(max(n, 100)),
            "max_replication_slots": str(n + 10), "wal_level": "logical"}).init()
        pg.start()
        exporter = None
        try:
            pg.sql("CREATE EXTENSION cdc_health")
            pg.sql(f"SELECT pg_create_physical_replication_slot('slot_' || i, true) "
                   f"FROM generate_series(1, {n}) i")
            endpoint = f"http://127.0.0.1:{port}/metrics"
            wait_until(lambda: get(endpoint).count(b"cdc_health_slot_info{") == n, timeout=60,
                       what=f"{n} slots in the endpoint")
            exporter = peer.Exporter(pg)
            log(f"scrapes at {n} slots")
            results[n] = scrape_costs(pg, exporter, endpoint, scrapes)
            results[n]["pass_ms"] = 1000 * float(pg.one(
                "SELECT substring(cdc_health.metrics() FROM "
                "'cdc_health_worker_pass_duration_seconds ([0-9.e-]+)')"))
        finally:
            if exporter:
                exporter.stop()
            pg.close()
    return results


def common_seconds(text):
    """'5s' -> 5.0"""
    return float(text.rstrip("s"))


def firing_since(prom, alert, slot, label):
    for a in prom.api("alerts")["alerts"]:
        if (a["labels"].get("alertname") == alert and a["labels"].get(label) == slot
                and a["state"] == "firing"):
            return True
    return False


def part_detection(trials, scrape):
    port = free_port()
    pg = Cluster(PG15_CONFIG, name="bench-metrics-fault", settings={
        "shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s",
        "cdc_health.metrics_address": f"'127.0.0.1:{port}'", "wal_level": "logical",
        "max_slot_wal_keep_size": "64MB", "max_wal_size": "1GB"}).init()
    pg.start()
    exporter = prom = None
    rules = os.path.join(pg.base, "exporter-rules.yml")
    with open(rules, "w") as f:
        f.write(f"groups:\n- name: exporter\n  rules:\n  - alert: SlotLost\n"
                f"    expr: {LOST_RULE}\n")
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        exporter = peer.Exporter(pg)
        prom = Prometheus({"cdc_health": [f"127.0.0.1:{port}"], "postgres": [exporter.target]},
                          interval=scrape,
                          rule_files=[os.path.join(CONTRIB, "prometheus", "cdc_health.rules.yml"),
                                      rules])
        ours, theirs, missed = [], [], 0
        for i in range(trials):
            slot = f"victim_{i}"
            pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
            # Both sides see the slot alive first; then a random phase against the scrapes
            # and the two rule groups' evaluations, which Prometheus offsets from each other.
            time.sleep(6 + random.uniform(0, common_seconds(scrape)))
            pg.grow_wal(6)
            pg.sql("CHECKPOINT")
            fault = time.time()
            seen = {}
            deadline = fault + 120
            while time.time() < deadline and len(seen) < 2:
                if "ours" not in seen and firing_since(prom, "CdcHealthSlotLost", slot, "slot_name"):
                    seen["ours"] = time.time() - fault
                if "theirs" not in seen and firing_since(prom, "SlotLost", slot, "slot_name"):
                    seen["theirs"] = time.time() - fault
                time.sleep(0.1)
            if len(seen) < 2:
                missed += 1
            if "ours" in seen:
                ours.append(seen["ours"])
            if "theirs" in seen:
                theirs.append(seen["theirs"])
            log(f"trial {i}: {seen}")
            pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
        return {"scrape": scrape, "cdc_health": stats(ours), "postgres_exporter": stats(theirs),
                "missed": missed, "trials": trials}
    finally:
        if prom:
            prom.close()
        if exporter:
            exporter.stop()
        pg.close()


def ms(v):
    return f"{v * 1000:.2f} ms" if v < 1 else f"{v:.2f} s"


def render(r):
    lines = [BEGIN, "## Prometheus metrics: the /metrics endpoint against postgres_exporter", "",
             f"Generated by `{r['command']}` on {r['date']} in {r['minutes']:.1f} minutes "
             f"(PostgreSQL 15, physical slots, {r['scrapes']} scrapes per side and slot count, "
             "one after another; CPU is every process of the cluster, less an idle window of the "
             "same length; the exporter's own process is listed apart).", "",
             "| slots | cdc_health scrape median / p95 | postgres_exporter median / p95 | "
             "exporter ÷ cdc_health (median) | server CPU per scrape: cdc_health / exporter | "
             "exporter process CPU per scrape | body: cdc_health / exporter | worker pass (renders the state) |",
             "|---|---|---|---|---|---|---|---|"]
    for n, row in sorted(r["scrapes_by_slots"].items(), key=lambda kv: int(kv[0])):
        a, b = row["cdc_health"], row["postgres_exporter"]
        ratio = b["latency"]["median"] / a["latency"]["median"]
        lines.append(
            f"| {n} | {ms(a['latency']['median'])} / {ms(a['latency']['p95'])} | "
            f"{ms(b['latency']['median'])} / {ms(b['latency']['p95'])} | **{ratio:.1f}×** | "
            f"{a['server_cpu_ms_per_scrape']:.2f} ms / {b['server_cpu_ms_per_scrape']:.2f} ms | "
            f"{(b['exporter_cpu_ms_per_scrape'] or 0):.1f} ms | "
            f"{a['bytes'] / 1024:.0f} kB / {b['bytes'] / 1024:.0f} kB | {row['pass_ms']:.1f} ms |")
    d = r["detection"]
    lines += ["", f"Fault to firing alert in the same Prometheus (scrape and evaluation every "
              f"{d['scrape']}; cdc_health.interval 1s), a physical slot lost by a CHECKPOINT, "
              f"{d['trials']} trials (missed by either: {d['missed']}):", "",
              "| through | alert | median | p95 |", "|---|---|---|---|"]
    for side, alert in [("cdc_health", "CdcHealthSlotLost (contrib rules)"),
                        ("postgres_exporter", "SlotLost (NaN retained WAL)")]:
        s = d[side]
        lines.append(f"| {side} | {alert} | {ms(s['median'])} | {ms(s['p95'])} |" if s
                     else f"| {side} | {alert} | never fired | |")
    lines += ["", "Faults fall at random phases against the scrapes and the two rule groups' "
              "evaluations (Prometheus offsets each group and target on its own). "
              "Through Prometheus both sides wait for a scrape and an evaluation; "
              "cdc_health serves what its last pass saw (at most one `cdc_health.interval` "
              "old), the exporter queries at scrape time. cdc_health's own NOTIFY path (section 1) "
              "does not wait for either.", END]
    return "\n".join(lines) + "\n"


def with_section(old, section):
    """`old` markdown with its metrics section replaced by (or extended with) `section`."""
    return common.with_section(old, section, BEGIN, END)


def section_of(path):
    """The metrics section kept in the markdown at `path`, if any (bench/run.py keeps it)."""
    return common.section_of(path, BEGIN, END)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.time()
    slots = [10, 100] if args.quick else [10, 100, 1000]
    scrapes = 10 if args.quick else 100
    r = {"command": "/usr/bin/python3 bench/metrics_endpoint.py" + (" --quick" if args.quick else ""),
         "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
         "scrapes": scrapes}
    r["scrapes_by_slots"] = part_scrapes(slots, scrapes)
    r["detection"] = part_detection(2 if args.quick else 8, "5s")
    r["minutes"] = (time.time() - started) / 60
    common.finish(r, "metrics", render(r), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
