"""Alert delivery, in one run on real servers:

1. fault (a slot lost at a CHECKPOINT) to the alert present in one Alertmanager, through a
   cdc_health `alertmanager` sink and through postgres_exporter + Prometheus (the SlotLost rule
   of bench/metrics_endpoint.py, scrape and evaluation every 5s) sending to the same
   Alertmanager;
2. webhook throughput: 1,000 slots lost by one checkpoint, transitions per second from the
   first to the last request the local receiver gets;
3. the WAL the outbox adds per alert: check_now() raising 200 alerts with 0, 1 and 3 sinks.

    /usr/bin/python3 bench/delivery.py            # about 5 minutes
    /usr/bin/python3 bench/delivery.py --quick    # smoke run

Writes its section of BENCHMARKS.md (between the delivery markers; bench/run.py keeps it).
Needs root, the extension installed into the system PostgreSQL 15, Debian's prometheus,
prometheus-alertmanager and prometheus-postgres-exporter.
"""

import argparse
import datetime
import os
import random
import sys
import time

import common
from common import PG15_CONFIG, Cluster, log, stats
import peer
from alertstack import Alertmanager  # tests/, on the path through common
from promstack import Prometheus
from receiver import Receiver

BEGIN, END = "<!-- delivery:begin -->", "<!-- delivery:end -->"
LOST_RULE = "pg_replication_slots_pg_wal_lsn_diff != pg_replication_slots_pg_wal_lsn_diff"
BASE = {"shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s",
        "wal_level": "logical", "max_wal_size": "1GB"}


def in_alertmanager(am, alertname, slot):
    return any(a["labels"].get("slot_name") == slot
               for a in am.alerts(filter={"alertname": alertname}))


def part_fault_to_alertmanager(trials, scrape):
    pg = Cluster(PG15_CONFIG, name="bench-delivery-fault",
                 settings={**BASE, "max_slot_wal_keep_size": "64MB"}).init()
    pg.start()
    exporter = prom = None
    with Receiver() as notifications, Alertmanager(notifications.url) as am:
        rules = os.path.join(pg.base, "exporter-rules.yml")
        with open(rules, "w") as f:
            f.write(f"groups:\n- name: exporter\n  rules:\n  - alert: SlotLost\n"
                    f"    expr: {LOST_RULE}\n")
        try:
            pg.sql("CREATE EXTENSION cdc_health")
            pg.sql("SELECT cdc_health.add_sink('am', 'alertmanager', %s)", (am.url,))
            exporter = peer.Exporter(pg)
            prom = Prometheus({"postgres": [exporter.target]}, interval=scrape,
                              rule_files=[rules],
                              alertmanagers=[am.url.replace("http://", "")])
            ours, theirs, missed = [], [], 0
            for i in range(trials):
                slot = f"victim_{i}"
                pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
                time.sleep(6 + random.uniform(0, float(scrape.rstrip("s"))))
                pg.grow_wal(6)
                pg.sql("CHECKPOINT")
                fault = time.time()
                seen = {}
                while time.time() < fault + 120 and len(seen) < 2:
                    if "ours" not in seen and in_alertmanager(am, "cdc_health_lost", slot):
                        seen["ours"] = time.time() - fault
                    if "theirs" not in seen and in_alertmanager(am, "SlotLost", slot):
                        seen["theirs"] = time.time() - fault
                    time.sleep(0.1)
                missed += len(seen) < 2
                if "ours" in seen:
                    ours.append(seen["ours"])
                if "theirs" in seen:
                    theirs.append(seen["theirs"])
                log(f"trial {i}: {seen}")
                pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
            return {"scrape": scrape, "trials": trials, "missed": missed,
                    "cdc_health": stats(ours), "postgres_exporter": stats(theirs)}
        finally:
            if prom:
                prom.close()
            if exporter:
                exporter.stop()
            pg.close()


def part_throughput(slots):
    pg = Cluster(PG15_CONFIG, name="bench-delivery-many", settings={
        **BASE, "max_replication_slots": str(slots + 10), "max_slot_wal_keep_size": "16MB",
        "cdc_health.interval": "2s"}).init()
    pg.start()
    try:
        with Receiver() as r:
            pg.sql("CREATE EXTENSION cdc_health")
            pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s)", (r.url,))
            pg.sql("SELECT pg_create_physical_replication_slot('s' || i, true) "
                   "FROM generate_series(1, %s) i", (slots,))
            time.sleep(3)
            pg.grow_wal(4, checkpoint=True)
            got = r.wait_for_requests(slots, timeout=600,
                                      predicate=lambda q: (q.json or {}).get("finding") == "lost")
            span = got[-1].at - got[0].at
            queued = pg.one("SELECT extract(epoch FROM max(created_at) - min(created_at)) "
                            "FROM cdc_health.deliveries")
            return {"slots": slots, "seconds": span, "per_second": slots / span if span else None,
                    "queue_span": queued}
    finally:
        pg.close()


def wal_per_alert(sinks, alerts):
    pg = Cluster(PG15_CONFIG, name=f"bench-delivery-wal{sinks}", settings={
        **BASE, "cdc_health.interval": "1h", "cdc_health.inactive_warning": "0",
        "max_replication_slots": str(alerts + 10)}).init()
    pg.start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        for i in range(sinks):
            # Nothing listens there: the rows stay queued, which is what the WAL is about.
            pg.sql("SELECT cdc_health.add_sink(%s, 'webhook', 'http://127.0.0.1:9/')",
                   (f"sink{i}",))
        pg.sql("SELECT pg_create_physical_replication_slot('s' || i) "
               "FROM generate_series(1, %s) i", (alerts,))
        pg.sql("SELECT cdc_health.check_now()")  # settles history's first rows
        pg.sql("UPDATE cdc_health.alerts SET resolved_at = now()")
        pg.sql("DELETE FROM cdc_health.alerts")
        pg.sql("DELETE FROM cdc_health.deliveries")
        before = pg.one("SELECT pg_current_wal_lsn()")
        raised = len(pg.sql("SELECT * FROM cdc_health.check_now() WHERE event = 'raised'"))
        wal = pg.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (before,))
        return {"sinks": sinks, "raised": raised, "wal_bytes": float(wal)}
    finally:
        pg.close()


def part_wal(alerts):
    return [wal_per_alert(n, alerts) for n in (0, 1, 3)]


def ms(v):
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def render(r):
    d = r["fault"]
    lines = [BEGIN, "## Alert delivery: sinks against postgres_exporter + Prometheus + "
             "Alertmanager", "",
             f"Generated by `{r['command']}` on {r['date']} in {r['minutes']:.1f} minutes "
             "(PostgreSQL 15, release build, cdc_health.interval 1s).", "",
             f"Fault (a physical slot lost by a CHECKPOINT) to the alert present in the same "
             f"Alertmanager's `/api/v2/alerts`, {d['trials']} trials at random phases "
             f"(missed by either: {d['missed']}); Prometheus scrapes and evaluates every "
             f"{d['scrape']}:", "",
             "| through | median | p95 |", "|---|---|---|"]
    for side, name in [("cdc_health", "cdc_health `alertmanager` sink (cdc_health_lost)"),
                       ("postgres_exporter", "postgres_exporter → Prometheus → Alertmanager "
                                             "(SlotLost)")]:
        s = d[side]
        lines.append(f"| {name} | {ms(s['median'])} | {ms(s['p95'])} |" if s
                     else f"| {name} | never arrived | |")
    if d["cdc_health"] and d["postgres_exporter"]:
        ratio = d["postgres_exporter"]["median"] / d["cdc_health"]["median"]
        lines += ["", f"The exporter path takes **{ratio:.1f}×** as long (medians)."]
    t = r["throughput"]
    lines += ["", f"Webhook throughput: {t['slots']} slots lost by one checkpoint, "
              f"{t['slots']} `raised` transitions delivered to a local receiver in "
              f"{t['seconds']:.2f} s from the first request to the last: "
              f"**{t['per_second']:.0f} transitions/s** (the pass queued them within "
              f"{t['queue_span']:.2f} s).", "",
              "WAL written by `check_now()` raising the same alerts, by number of sinks (the "
              "outbox adds a row per alert and sink):", "",
              "| sinks | alerts raised | WAL | per alert | added per alert and sink |",
              "|---|---|---|---|---|"]
    base = r["wal"][0]["wal_bytes"] / max(r["wal"][0]["raised"], 1)
    for w in r["wal"]:
        per = w["wal_bytes"] / max(w["raised"], 1)
        added = (per - base) / w["sinks"] if w["sinks"] else 0
        lines.append(f"| {w['sinks']} | {w['raised']} | {w['wal_bytes'] / 1024:.0f} kB | "
                     f"{per:.0f} B | {added:.0f} B |" if w["sinks"] else
                     f"| 0 | {w['raised']} | {w['wal_bytes'] / 1024:.0f} kB | {per:.0f} B | |")
    lines += ["", "The sink posts when the delivery worker's next round (every 250 ms) finds "
              "the committed transition; the exporter path waits for a scrape, a rule "
              "evaluation and Prometheus's own send to Alertmanager.", END]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.time()
    r = {"command": "/usr/bin/python3 bench/delivery.py" + (" --quick" if args.quick else ""),
         "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    r["fault"] = part_fault_to_alertmanager(2 if args.quick else 10, "5s")
    r["throughput"] = part_throughput(200 if args.quick else 1000)
    r["wal"] = part_wal(50 if args.quick else 200)
    r["minutes"] = (time.time() - started) / 60
    common.finish(r, "delivery", render(r), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
