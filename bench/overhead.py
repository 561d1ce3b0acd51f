"""Overhead on the monitored server: CPU time of the cdc_health worker (from /proc), WAL it
makes an otherwise idle server write, rows and bytes it adds to cdc_health.slot_history;
against the peer, the server-side CPU of postgres_exporter's scrapes (every 15 s, by a real
Prometheus) on the same slot counts.

All clusters run at once, idle but for their monitor: one per slot count and
cdc_health.interval, one per slot count with postgres_exporter (and pg_stat_statements) and no
cdc_health, and a baseline with slots and no monitor. One slot in ten has a pg_recvlogical
consumer; every other slot is inactive, its `inactive` alert open (cdc_health.inactive_warning
= 0) before anything is measured. Server settings are PostgreSQL's defaults (checkpoint_timeout
5min) except wal_level = logical, fsync = off and synchronous_commit = off (neither changes how
much WAL is written).

On an idle server the worker writes in bursts far apart: a history row per slot once per
`history_idle_interval` (1 h) and a reminder per open alert once per
`alert_reminder_interval` (15 min). An hour is too long to wait for, so each cluster goes
through three measured phases and the hour is put together from them:
  idle       a window (after a CHECKPOINT) of passes that write neither: CPU per pass, WAL;
  history    CHECKPOINT, then one history round forced (history_interval and
             history_idle_interval set to 1s until it is written): WAL and CPU of a round,
             with the full-page images the first writes after a checkpoint cost;
  reminders  CHECKPOINT, then one reminder round forced (alert_reminder_interval 1s): the same.
Per hour = idle rate + rounds per hour at the default settings x cost of a round.

    /usr/bin/python3 bench/overhead.py --slots 10 100 500 --intervals 1s 10s --window 150
"""

import argparse
import concurrent.futures
import sys
import time

from common import Cluster, PG15_CONFIG, cpu_seconds, log, wait_until
from peer import Exporter, Prometheus

ACTIVE_SHARE = 10  # one slot in ten has a consumer
PEER_SCRAPE_SECS = 15.0
HISTORY_IDLE_SECS = 3600.0     # cdc_health.history_idle_interval default
HISTORY_INTERVAL_SECS = 60.0   # cdc_health.history_interval default
REMINDER_SECS = 900.0          # cdc_health.alert_reminder_interval default


def interval_seconds(text):
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


def settings_for(n, monitor, interval=None):
    active = max(1, n // ACTIVE_SHARE)
    s = {"checkpoint_timeout": "5min", "max_wal_size": "1GB", "hot_standby_feedback": "off",
         "max_replication_slots": str(n + 10), "max_wal_senders": str(active + 10)}
    if monitor == "cdc_health":
        s.update({"shared_preload_libraries": "'cdc_health'", "cdc_health.interval": interval,
                  "cdc_health.max_tracked_slots": str(n + 10),
                  "cdc_health.inactive_warning": "0"})
    elif monitor == "exporter":
        s.update({"shared_preload_libraries": "'pg_stat_statements'",
                  "pg_stat_statements.track": "all"})
    return s


class Subject:
    """One cluster with `n` slots and its monitor (cdc_health, exporter or none)."""

    def __init__(self, pg_config, n, monitor, interval=None):
        self.n, self.monitor, self.interval = n, monitor, interval
        self.label = f"{monitor} {n} slots" + (f" {interval}" if interval else "")
        self.pg = Cluster(pg_config, name=f"bench-ovh-{monitor}-{n}",
                          settings=settings_for(n, monitor, interval))
        self.exporter = None
        self.samples = []
        self.phases = {}
        self.settle_wait = 0.0

    def setup(self):
        pg = self.pg.init().start()
        if self.monitor == "cdc_health":
            pg.sql("CREATE EXTENSION cdc_health")
            # Reminders are counted as they arrive: since they no longer rewrite their alert
            # row, `alerts.notifications` does not count them.
            self.listener = pg.listen()
        if self.monitor == "exporter":
            pg.sql("CREATE EXTENSION pg_stat_statements")
            pg.sql("CREATE ROLE exporter LOGIN IN ROLE pg_monitor")
        # What initdb and the setup left for autovacuum (it analyzes template1 once, too),
        # done now: otherwise autovacuum writes WAL in the windows, and moves every slot's
        # figures enough for a history row.
        # A second VACUUM: the first one's ANALYZE left dead rows in pg_statistic.
        for db in ("template1", "postgres"):
            pg.sql("VACUUM ANALYZE", dbname=db)
            pg.sql("VACUUM", dbname=db)
        for i in range(self.n):
            pg.create_logical_slot(f"slot_{i}")
        for i in range(0, self.n, ACTIVE_SHARE):
            pg.recvlogical(f"slot_{i}")
        if self.monitor == "exporter":
            self.exporter = Exporter(pg, user="exporter")
        return self

    @property
    def inactive(self):
        return self.n - len(range(0, self.n, ACTIVE_SHARE))

    def settle(self):
        """Until every inactive slot's alert is open and the active ones' are resolved."""
        if self.monitor == "cdc_health":
            self.has_idle_interval = bool(self.pg.one(
                "SELECT count(*) FROM pg_settings WHERE name = 'cdc_health.history_idle_interval'"))
            wait_until(lambda: self.pg.one(
                "SELECT count(*) FROM cdc_health.alerts WHERE resolved_at IS NULL")
                == self.inactive, timeout=180, interval=0.5,
                what=f"{self.label}: inactive alerts open")
            # Raising the alerts left autovacuum work behind: done now, not in the window.
            self.pg.sql("VACUUM ANALYZE")
            self.pg.sql("VACUUM")
            # That VACUUM moved every slot's figures by a little WAL; where it crossed 1 MB a
            # row is due a history_interval (60 s) after the slot's last one, and the first
            # pass after that (up to an interval, 10 s, later) writes it: let those come now.
            time.sleep(self.settle_wait)
        if self.monitor == "exporter":
            self.pg.sql("SELECT pg_stat_statements_reset()")

    def worker_pid(self):
        return self.pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdc_health'")

    def snapshot(self):
        """(time, WAL position, CPU seconds or {pid: CPU}, counters...)."""
        pg = self.pg
        snap = {"at": time.time(),
                "wal": pg.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")}
        if self.monitor == "cdc_health":
            snap["rows"] = pg.one("SELECT count(*) FROM cdc_health.slot_history")
            self.listener.drain()
            snap["notifications"] = sum(1 for p in self.listener.received
                                        if p.get("event") == "reminder")
            snap["passes"] = pg.one("SELECT passes FROM cdc_health.worker_status()")
            snap["cpu"] = cpu_seconds(self.worker_pid())[0]
        elif self.monitor == "exporter":
            # Execution time of the exporter's statements (all, and the slot query alone), the
            # number of scrapes (it runs SELECT version() once per scrape) and the CPU of its
            # backends.
            r = pg.sql(
                "SELECT (coalesce(sum(total_exec_time + total_plan_time), 0) / 1000)::float8, "
                "(coalesce(sum(total_exec_time + total_plan_time) FILTER (WHERE query LIKE "
                "'%FROM pg_replication_slots%'), 0) / 1000)::float8, "
                "coalesce(sum(calls) FILTER (WHERE query = 'SELECT version()'), 0)::float8 "
                "FROM pg_stat_statements WHERE userid = 'exporter'::regrole")[0]
            snap.update(exec=r[0], slot_exec=r[1], scrapes=r[2])
            pids = [x[0] for x in pg.sql("SELECT pid FROM pg_stat_activity "
                                         "WHERE usename = 'exporter'")]
            snap["cpu"] = {pid: (cpu_seconds(pid) or (0.0, 0.0))[0] for pid in pids}
        return snap

    def rates(self, a, b):
        """Idle-window figures between two snapshots. CPU per pass of the worker (per scrape of
        the exporter) times the passes (scrapes) of an hour, so that a window that happens to
        hold one pass more or less does not count."""
        secs = b["at"] - a["at"]
        out = {"seconds": secs, "wal_per_hour": (b["wal"] - a["wal"]) * 3600.0 / secs}
        if self.monitor == "cdc_health":
            passes = b["passes"] - a["passes"]
            out.update(passes=passes, rows=b["rows"] - a["rows"])
            if passes > 0:
                out["cpu_per_pass"] = (b["cpu"] - a["cpu"]) / passes
                out["cpu_per_hour"] = out["cpu_per_pass"] * 3600.0 / interval_seconds(self.interval)
        elif self.monitor == "exporter":
            scrapes = b["scrapes"] - a["scrapes"]
            both = [p for p in b["cpu"] if p in a["cpu"]]
            cpu = sum(b["cpu"][p] - a["cpu"][p] for p in both)
            out.update(scrapes=scrapes, backends=len(both))
            if scrapes > 0:
                per_hour = 3600.0 / PEER_SCRAPE_SECS / scrapes
                out["cpu_per_scrape"] = cpu / scrapes
                out["cpu_per_hour"] = cpu * per_hour
                out["exec_per_hour"] = (b["exec"] - a["exec"]) * per_hour
                out["slot_query_exec_per_hour"] = (b["slot_exec"] - a["slot_exec"]) * per_hour
        return out

    def forced(self, name, settings, done, idle_cpu_per_pass, linger=0.0):
        """CHECKPOINT, set `settings` until done(start snapshot, now snapshot), reset them, wait
        `linger` seconds more (for the autovacuum run that the round calls for); the WAL and
        the CPU beyond idle passes of what happened in between."""
        pg = self.pg
        pg.sql("CHECKPOINT")
        a = self.snapshot()
        for key, value in settings.items():
            pg.sql(f"ALTER SYSTEM SET {key} = %s", (value,))
        pg.sql("SELECT pg_reload_conf()")
        try:
            wait_until(lambda: done(a, self.snapshot()), timeout=120, interval=0.05,
                       what=f"{self.label}: forced {name}")
        finally:
            for key in settings:
                pg.sql(f"ALTER SYSTEM RESET {key}")
            pg.sql("SELECT pg_reload_conf()")
        time.sleep(0.5 + linger)
        b = self.snapshot()
        passes = b["passes"] - a["passes"]
        self.phases[name] = {
            "wal": b["wal"] - a["wal"], "rows": b["rows"] - a["rows"],
            "notifications": b["notifications"] - a["notifications"], "passes": passes,
            "extra_cpu": (b["cpu"] - a["cpu"]) - passes * (idle_cpu_per_pass or 0.0)}

    def history_bytes_per_row(self):
        r = self.pg.sql("SELECT pg_total_relation_size('cdc_health.slot_history'), count(*) "
                        "FROM cdc_health.slot_history")[0]
        return r[0] / r[1] if r[1] else None

    def result(self):
        windows = [self.rates(a, b) for a, b in zip(self.samples, self.samples[1:])]
        whole = self.rates(self.samples[0], self.samples[-1])
        out = {"monitor": self.monitor, "slots": self.n, "interval": self.interval,
               "windows": windows, "idle": whole}
        if self.monitor == "cdc_health":
            h, r = self.phases["history"], self.phases["reminders"]
            open_alerts = self.inactive
            # Per round, scaled to exactly one row per slot (one reminder per open alert):
            # the forced phase may catch a second round at interval 1s.
            round_wal = h["wal"] * self.n / h["rows"] if h["rows"] else None
            reminder_wal = r["wal"] * open_alerts / r["notifications"] if r["notifications"] else None
            round_cpu = h["extra_cpu"] * self.n / h["rows"] if h["rows"] else 0.0
            reminder_cpu = (r["extra_cpu"] * open_alerts / r["notifications"]
                            if r["notifications"] else 0.0)
            # A build without history_idle_interval writes a row per slot every
            # history_interval: the idle window holds those rows already.
            rounds = 3600.0 / HISTORY_IDLE_SECS if self.has_idle_interval else 0.0
            reminders = 3600.0 / REMINDER_SECS
            out.update(
                phases=self.phases, open_alerts=open_alerts,
                history_round_wal=round_wal, reminder_round_wal=reminder_wal,
                history_round_cpu=round_cpu, reminder_round_cpu=reminder_cpu,
                wal_per_hour=whole["wal_per_hour"] + rounds * (round_wal or 0)
                + reminders * (reminder_wal or 0),
                cpu_per_hour=(whole.get("cpu_per_hour") or 0) + rounds * max(round_cpu, 0)
                + reminders * max(reminder_cpu, 0),
                rows_per_day_idle=self.n * 86400.0 / (HISTORY_IDLE_SECS if self.has_idle_interval
                                                      else HISTORY_INTERVAL_SECS),
                has_idle_interval=self.has_idle_interval,
                rows_per_day_busy=self.n * 86400.0 / HISTORY_INTERVAL_SECS)
        return out

    def close(self):
        if getattr(self, "listener", None):
            self.listener.close()
        if self.exporter:
            self.exporter.stop()
        self.pg.close()


def measure(pg_config, counts, intervals, window, windows, autovacuum_wait=70.0,
            settle_wait=80.0):
    """`autovacuum_wait`: how long each forced round is followed, so that the autovacuum run
    its writes call for (autovacuum_naptime is 1 min) is counted with it. `settle_wait`: how
    long the clusters idle before the window (history rows due after the setup)."""
    subjects = [Subject(pg_config, n, "cdc_health", i) for n in counts for i in intervals]
    subjects += [Subject(pg_config, n, "exporter") for n in counts]
    subjects.append(Subject(pg_config, 100 if 100 in counts else counts[-1], "none"))
    ours = [s for s in subjects if s.monitor == "cdc_health"]
    for s in ours:
        s.settle_wait = settle_wait
    prom = None
    try:
        log(f"  overhead: setting up {len(subjects)} clusters "
            f"({sum(s.n for s in subjects)} slots)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(Subject.setup, subjects))
        prom = Prometheus([s.exporter.target for s in subjects if s.exporter])
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(subjects)) as pool:
            list(pool.map(Subject.settle, subjects))
        time.sleep(2)
        for s in subjects:
            s.pg.sql("CHECKPOINT")
        log(f"  overhead: idle window {windows} x {window / windows:.0f}s")
        for k in range(windows + 1):
            if k:
                time.sleep(window / windows)
            for s in subjects:
                s.samples.append(s.snapshot())
        log("  overhead: one forced history round and one reminder round per cluster")

        def rounds(s):
            idle = s.rates(s.samples[0], s.samples[-1]).get("cpu_per_pass")
            force = {"cdc_health.history_interval": "1s"}
            if s.has_idle_interval:
                force["cdc_health.history_idle_interval"] = "1s"
            # Both rounds are followed by the autovacuum run their writes call for, so that
            # it counts with the round that caused it (not with the next one).
            s.forced("history", force,
                     lambda a, b: b["rows"] - a["rows"] >= s.n, idle, linger=autovacuum_wait)
            s.forced("reminders", {"cdc_health.alert_reminder_interval": "1s"},
                     lambda a, b: b["notifications"] - a["notifications"] >= s.inactive, idle,
                     linger=autovacuum_wait)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ours)) as pool:
            list(pool.map(rounds, ours))
        bytes_per_row = max((s.history_bytes_per_row() or 0) for s in ours)
        return {"window": window, "windows": windows, "active_share": ACTIVE_SHARE,
                "autovacuum_wait": autovacuum_wait, "settle_wait": settle_wait,
                "history_bytes_per_row_small_table": bytes_per_row,
                "defaults": {"history_idle_interval": HISTORY_IDLE_SECS,
                             "history_interval": HISTORY_INTERVAL_SECS,
                             "alert_reminder_interval": REMINDER_SECS},
                "subjects": [s.result() for s in subjects]}
    finally:
        if prom:
            prom.stop()
        for s in subjects:
            s.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-config", default=PG15_CONFIG)
    parser.add_argument("--slots", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--intervals", nargs="+", default=["1s", "10s"])
    parser.add_argument("--window", type=float, default=150)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--autovacuum-wait", type=float, default=70.0)
    parser.add_argument("--settle-wait", type=float, default=80.0)
    args = parser.parse_args()
    r = measure(args.pg_config, args.slots, args.intervals, args.window, args.windows,
                args.autovacuum_wait, args.settle_wait)
    for s in r["subjects"]:
        line = f"{s['monitor']:10} {s['slots']:4d} slots {s['interval'] or '':4}"
        if s["monitor"] == "cdc_health":
            line += (f" cpu/h {s['cpu_per_hour']:.2f}s (idle {s['idle'].get('cpu_per_hour', 0):.2f}s)"
                     f" wal/h {s['wal_per_hour'] / 1024:.0f} kB (idle "
                     f"{s['idle']['wal_per_hour'] / 1024:.0f} kB, history round "
                     f"{(s['history_round_wal'] or 0) / 1024:.0f} kB, reminder round "
                     f"{(s['reminder_round_wal'] or 0) / 1024:.0f} kB)")
        elif s["monitor"] == "exporter":
            i = s["idle"]
            line += (f" cpu/h {i.get('cpu_per_hour', 0):.2f}s pgss {i.get('exec_per_hour', 0):.2f}s"
                     f" slot query {i.get('slot_query_exec_per_hour', 0):.3f}s"
                     f" wal/h {i['wal_per_hour'] / 1024:.0f} kB")
        else:
            line += f" wal/h {s['idle']['wal_per_hour'] / 1024:.0f} kB"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
