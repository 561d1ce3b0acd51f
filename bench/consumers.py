"""Consumer diagnosis (issue 31), in one run on real clusters and real consumers:

1. pgbench throughput with the library preloaded (its log hook, its session hooks, its
   workers) and without it, on the same cluster restarted between rounds, while consumers
   connect and fail: a crash-looping consumer, a consumer taking a slot in use (55006, a
   logged ERROR each time) at a fixed rate, and one healthy consumer;
2. the time from a consumer's death (SIGKILL of pg_recvlogical, and a clean stop by SIGINT) to
   `detail->'consumer'->>'last_disconnect_at'` in `cdc_health()` at the default interval
   (10s), polled side by side with the plain catalog query's `active = false`;
3. what reading the consumers adds to one `cdc_health()` call: 100 slots with none and with
   10 consumers connected, and the `pg_stat_replication` query that the latter adds.

    /usr/bin/python3 bench/consumers.py            # about 6 minutes
    /usr/bin/python3 bench/consumers.py --quick    # smoke run

Writes its section of BENCHMARKS.md (between the consumers markers; bench/run.py keeps it).
Needs root and the extension installed into the system PostgreSQL 15.
"""

import argparse
import datetime
import os
import re
import signal
import subprocess
import sys
import threading
import time

import common
from common import PG15_CONFIG, Child, Cluster, log, stats, timed_query, wait_until

BEGIN, END = "<!-- consumers:begin -->", "<!-- consumers:end -->"
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
PRELOAD = {"shared_preload_libraries": "'cdc_health'"}
LIVE = ("SELECT pid, backend_start, reply_time, sent_lsn, write_lsn, flush_lsn "
        "FROM pg_stat_replication")


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


# -- 1. throughput with and without the library, while consumers fail ----------------------

class Taker(threading.Thread):
    """Replication connections that try to take a slot in use, `rate` times a second: each
    attempt ends in ERROR 55006 in a walsender, which the log hook records."""

    def __init__(self, pg, slot, rate):
        super().__init__(daemon=True)
        self.pg, self.slot, self.rate = pg, slot, rate
        self.stop_at = None
        self.attempts = self.errors = 0
        self.halt = threading.Event()

    def run(self):
        import psycopg2
        import psycopg2.extras
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.halt.is_set():
            try:
                conn = psycopg2.connect(self.pg.dsn(),
                                        connection_factory=psycopg2.extras
                                        .LogicalReplicationConnection)
                try:
                    self.attempts += 1
                    conn.cursor().start_replication(slot_name=self.slot, decode=True)
                except psycopg2.Error:
                    self.errors += 1
                finally:
                    conn.close()
            except psycopg2.Error:
                pass
            next_at += period
            self.halt.wait(max(0.0, next_at - time.monotonic()))


def pgbench(pg, seconds, clients, extra):
    out = subprocess.run([pg.bin("pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                          "postgres", "-n", "-T", str(seconds), "-c", str(clients), "-j", "2",
                          *extra, "postgres"], capture_output=True, text=True, check=True)
    m = re.search(r"tps = ([0-9.]+)", out.stdout)
    return float(m.group(1))


WORKLOADS = [("tpcb-like, 4 clients", 4, []),
             ("select-only, a new connection per transaction, 4 clients", 4, ["-S", "-C"])]


def part_throughput(rounds, seconds, rate):
    pg = Cluster(PG15_CONFIG, name="bench-consumers-tps",
                 settings={"max_wal_senders": "40", "max_connections": "100",
                           "cdc_health.interval": "10s"}).init()
    pg.start()
    out = {"rounds": rounds, "seconds": seconds, "rate": rate, "workloads": {}}
    try:
        subprocess.run([pg.bin("pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                        "postgres", "-i", "-q", "-s", "10", "postgres"], check=True,
                       capture_output=True)
        pg.create_logical_slot("healthy")
        pg.create_logical_slot("looping")
        pg.create_logical_slot("taken")
        tps = {name: {"with": [], "without": []} for name, _, _ in WORKLOADS}
        errors = {"with": 0, "without": 0}
        for i in range(rounds):
            # Alternate the order so drift (autovacuum, the page cache) falls on both sides.
            for side in (("with", "without") if i % 2 == 0 else ("without", "with")):
                pg.stop_server()
                conf = os.path.join(pg.datadir, "postgresql.conf")
                with open(conf, "a") as f:
                    f.write("shared_preload_libraries = 'cdc_health'\n" if side == "with"
                            else "shared_preload_libraries = ''\n")
                pg.start()
                if side == "with":
                    pg.sql("CREATE EXTENSION IF NOT EXISTS cdc_health")
                consumers = [
                    Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                           "-U", "postgres", "-d", "postgres", "--slot", "healthy",
                           "--start", "-f", "/dev/null", "-F", "1", "-s", "1"]),
                    Child(["/usr/bin/python3", os.path.join(TESTS, "looping_consumer.py"),
                           pg.dsn(), "looping", "2", "1", "no"]),
                    Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                           "-U", "postgres", "-d", "postgres", "--slot", "taken",
                           "--start", "-f", "/dev/null", "-F", "1", "-s", "1"]),
                ]
                wait_until(lambda: pg.one("SELECT count(*) FROM pg_replication_slots "
                                          "WHERE active AND slot_name IN ('healthy', 'taken')")
                           == 2, what="the consumers to connect")
                taker = Taker(pg, "taken", rate)
                taker.start()
                try:
                    for name, clients, extra in WORKLOADS:
                        tps[name][side].append(pgbench(pg, seconds, clients, extra))
                finally:
                    taker.halt.set()
                    taker.join(10)
                    for c in consumers:
                        c.stop()
                errors[side] += taker.errors
                log(f"    round {i + 1} {side}: "
                    + ", ".join(f"{tps[n][side][-1]:.0f}" for n, _, _ in WORKLOADS)
                    + f" tps, {taker.errors} failed takes")
        for name, _, _ in WORKLOADS:
            out["workloads"][name] = {s: stats(v) for s, v in tps[name].items()}
            out["workloads"][name]["raw"] = tps[name]
        out["failed_takes"] = errors
    finally:
        pg.close()
    return out


# -- 2. consumer death to last_disconnect_at -----------------------------------------------

DISCONNECT = ("SELECT detail->'consumer'->>'last_disconnect_at' FROM cdc_health() "
              "WHERE slot_name = 'd'")
ACTIVE = "SELECT active FROM pg_replication_slots WHERE slot_name = 'd'"


def part_death(trials):
    pg = Cluster(PG15_CONFIG, name="bench-consumers-death", settings=PRELOAD).init().start()
    out = {}
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        pg.create_logical_slot("d")
        conn = pg.connect()
        cur = conn.cursor()
        for how, sig in (("SIGKILL", signal.SIGKILL), ("SIGINT (a clean stop)", signal.SIGINT)):
            ours, plain, stamped = [], [], []
            for _ in range(trials):
                cur.execute(DISCONNECT)
                before = cur.fetchone()[0]
                proc = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                              "-U", "postgres", "-d", "postgres", "--slot", "d", "--start",
                              "-f", "/dev/null", "-n"])
                wait_until(lambda: pg.one(ACTIVE), what="the consumer to connect")
                time.sleep(0.3)
                killed_wall = time.time()
                killed = time.monotonic()
                proc.proc.send_signal(sig)
                seen_ours = seen_plain = None
                while (seen_ours is None or seen_plain is None) and \
                        time.monotonic() - killed < 30:
                    if seen_ours is None:
                        cur.execute(DISCONNECT)
                        at = cur.fetchone()[0]
                        if at and at != before:
                            seen_ours = time.monotonic() - killed
                            stamp = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ")
                            stamped.append(stamp.replace(tzinfo=datetime.timezone.utc)
                                           .timestamp() - killed_wall)
                    if seen_plain is None:
                        cur.execute(ACTIVE)
                        if cur.fetchone()[0] is False:
                            seen_plain = time.monotonic() - killed
                proc.proc.wait(10)
                if seen_ours is not None:
                    ours.append(seen_ours)
                if seen_plain is not None:
                    plain.append(seen_plain)
            out[how] = {"trials": trials, "cdc_health": stats(ours), "plain": stats(plain),
                        "stamped": stats(stamped)}
            log(f"    death by {how}: cdc_health {out[how]['cdc_health']}, "
                f"plain {out[how]['plain']}")
        conn.close()
    finally:
        pg.close()
    return out


# -- 3. what reading the consumers adds to a cdc_health() call -----------------------------

def part_call_cost(slots, connected, repeat):
    pg = Cluster(PG15_CONFIG, name="bench-consumers-call",
                 settings={**PRELOAD, "max_replication_slots": str(slots + 10),
                           "max_wal_senders": str(connected + 10)}).init().start()
    out = {"slots": slots, "connected": connected, "repeat": repeat}
    consumers = []
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        for i in range(slots):
            pg.create_logical_slot(f"s{i}")
        conn = pg.connect()
        cur = conn.cursor()
        timed_query(cur, "SELECT * FROM cdc_health()", 20)
        out["none"] = timed_query(cur, "SELECT * FROM cdc_health()", repeat)
        for i in range(connected):
            consumers.append(Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p",
                                    str(pg.port), "-U", "postgres", "-d", "postgres", "--slot",
                                    f"s{i}", "--start", "-f", "/dev/null", "-s", "1"]))
        wait_until(lambda: pg.one("SELECT count(*) FROM pg_stat_replication") == connected,
                   what="the consumers to connect")
        timed_query(cur, "SELECT * FROM cdc_health()", 20)
        out["connected_call"] = timed_query(cur, "SELECT * FROM cdc_health()", repeat)
        out["live_query"] = timed_query(cur, LIVE, repeat)
        out["plain_query"] = timed_query(cur, "SELECT * FROM pg_replication_slots", repeat)
        conn.close()
    finally:
        for c in consumers:
            c.stop()
        pg.close()
    log(f"    call cost: {out}")
    return out


def render(r):
    t = r["throughput"]
    lines = [BEGIN, "## Consumer diagnosis: the hooks' cost and a consumer's death", "",
             f"Generated by `{r['command']}` on {r['date']} in {r['minutes']:.1f} minutes "
             "(PostgreSQL 15, release build).", "",
             f"pgbench throughput with `cdc_health` preloaded (its log and session hooks, its "
             f"workers at interval 10s, the extension created) and without it "
             f"(`shared_preload_libraries = ''`), the same cluster restarted between "
             f"{t['rounds']} alternating rounds of {t['seconds']} s per workload, while a "
             "pg_recvlogical streams, a psycopg2 consumer crash-loops (2 s sessions, 1 s apart, "
             f"confirming nothing) and a client tries to take a slot in use {t['rate']} times a "
             f"second (each an ERROR 55006 in a walsender; "
             f"{t['failed_takes']['with']} with the library and "
             f"{t['failed_takes']['without']} without):", "",
             "| workload | with (median tps) | without (median tps) | with / without |",
             "|---|---|---|---|"]
    for name, w in t["workloads"].items():
        ratio = w["with"]["median"] / w["without"]["median"]
        lines.append(f"| {name} | {w['with']['median']:.0f} | {w['without']['median']:.0f} | "
                     f"{ratio:.3f} |")
    lines += ["", "Rounds (tps, in run order): " + "; ".join(
        f"{name}: with {', '.join(f'{v:.0f}' for v in w['raw']['with'])}, without "
        f"{', '.join(f'{v:.0f}' for v in w['raw']['without'])}"
        for name, w in t["workloads"].items()) + ".", ""]
    d = r["death"]
    lines += ["A consumer's death (pg_recvlogical on a slot of its own) to the disconnection "
              "being visible, at the default `cdc_health.interval` of 10s: "
              "`detail->'consumer'->>'last_disconnect_at'` changing in `cdc_health()`, and "
              "`active = false` in `pg_replication_slots` (the plain catalog query), polled "
              "side by side on one connection:", "",
              "| death | trials | cdc_health() median | p95 | plain query median | p95 | "
              "recorded time − death (median) |", "|---|---|---|---|---|---|---|"]
    for how, v in d.items():
        o, p, s = v["cdc_health"], v["plain"], v["stamped"]
        lines.append(f"| {how} | {v['trials']} | {ms(o['median']) if o else 'never'} | "
                     f"{ms(o['p95']) if o else ''} | {ms(p['median']) if p else 'never'} | "
                     f"{ms(p['p95']) if p else ''} | {ms(s['median']) if s else ''} |")
    c = r["call"]
    added = c["connected_call"]["median"] - c["none"]["median"]
    lines += ["", f"One `SELECT * FROM cdc_health()` at {c['slots']} logical slots, medians of "
              f"{c['repeat']} calls: {ms(c['none']['median'])} with no consumer connected, "
              f"{ms(c['connected_call']['median'])} with {c['connected']} connected "
              f"(+{ms(added)}); the `pg_stat_replication` query the function adds when a slot "
              f"is active takes {ms(c['live_query']['median'])} on its own, and the plain "
              f"`SELECT * FROM pg_replication_slots` {ms(c['plain_query']['median'])}. "
              "Reading the ring (1,024 events of atomics, no lock) is part of both calls.",
              "", "The log hook returns at once for a process that is neither a walsender nor "
              "decoding through a slot, and records an event in the ring without a lock or an "
              "allocation when it is; a session's end arms no more than a `before_shmem_exit` "
              "callback in walsenders. The throughput ratios above show what that costs a "
              "busy server; a ratio within the spread of the rounds is noise.", END]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.time()
    r = {"command": "/usr/bin/python3 bench/consumers.py" + (" --quick" if args.quick else ""),
         "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    log("consumers: throughput with and without the library")
    r["throughput"] = part_throughput(2 if args.quick else 6, 5 if args.quick else 20, 20)
    log("consumers: death to last_disconnect_at")
    r["death"] = part_death(3 if args.quick else 20)
    log("consumers: cdc_health() call cost")
    r["call"] = part_call_cost(20 if args.quick else 100, 10, 20 if args.quick else 200)
    r["minutes"] = (time.time() - started) / 60
    common.finish(r, "consumers", render(r), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
