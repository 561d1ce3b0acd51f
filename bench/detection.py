"""Detection latency: fault injected to alert received, cdc_health against the peer
(postgres_exporter scraped by Prometheus every 15 s, rules evaluated every 15 s) watching the
same faults on the same cluster in the same run.

Faults (each on its own slot, at random instants, many in parallel, matched per slot):
  killed  a pg_recvlogical consumer is SIGKILLed            cdc_health `inactive` (warning at 0 s)
  stuck   a consumer stays connected, stops confirming      cdc_health `stalled` (stall_after 10 s)
  lost    a slot behind max_slot_wal_keep_size is           cdc_health `lost`
          invalidated by CHECKPOINT (instant: its end)

cdc_health's figure is the time until its `raised` NOTIFY arrives on a LISTEN connection;
the peer's is the rule evaluation at which its alert is firing in Prometheus (activeAt, plus
the `for` clause rounded up to evaluations). Alertmanager's own delays (group_wait 30 s by
default) are not counted: that favours the peer.

    /usr/bin/python3 bench/detection.py --interval 1s --trials 20
"""

import argparse
import concurrent.futures
import json
import math
import os
import random
import select
import signal
import sys
import threading
import time

from common import BENCH, Child, Cluster, PG15_CONFIG, log, stats, wait_until
from peer import Exporter, Prometheus, get_json, parse_time

STALL_AFTER = 10.0          # cdc_health.stall_after and the peer's `for`
STALL_MIN_WAL = 1 << 20     # cdc_health.stall_min_wal (default) and the peer's lag threshold
PEER_EVAL = 15.0            # Prometheus evaluation_interval
PEER_SCRAPE = 15.0          # Prometheus scrape_interval

# fault -> (cdc_health finding, its threshold in seconds, peer alert, peer label, peer `for`)
FAULTS = {
    "killed": ("inactive", 0.0, "SlotInactive", "slot_name", 0.0),
    "stuck": ("stalled", STALL_AFTER, "ConsumerStuck", "application_name", STALL_AFTER),
    "lost": ("lost", 0.0, "SlotLost", "slot_name", 0.0),
}


def seconds(setting):
    if setting.endswith("ms"):
        return float(setting[:-2]) / 1000
    return float(setting.rstrip("s"))


class NotifyRecorder(threading.Thread):
    """Every NOTIFY on channel cdc_health, with the wall-clock time it arrived."""

    def __init__(self, pg):
        super().__init__(daemon=True)
        self.conn = pg.connect()
        self.conn.cursor().execute("LISTEN cdc_health")
        self.events = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            if select.select([self.conn], [], [], 0.2)[0]:
                self.conn.poll()
                now = time.time()
                while self.conn.notifies:
                    self.events.append((now, json.loads(self.conn.notifies.pop(0).payload)))

    def first(self, slot, finding, after):
        for at, p in list(self.events):
            if (at > after and p.get("event") == "raised" and p.get("subject") == f"slot:{slot}"
                    and p.get("finding") == finding):
                return at
        return None

    def raised_for(self, slots, since):
        names = {f"slot:{s}" for s in slots}
        return [p for at, p in self.events
                if at > since and p.get("event") == "raised" and p.get("subject") in names]

    def stop(self):
        self.done.set()
        self.join(5)
        self.conn.close()


class AlertPoller(threading.Thread):
    """Polls Prometheus' alerts every 0.25 s and keeps every alert episode it saw: alert name,
    slot (label), activeAt, state."""

    def __init__(self, prom):
        super().__init__(daemon=True)
        self.prom = prom
        self.episodes = {}  # (alertname, key, activeAt) -> {"firing_seen": wall time or None}
        self.done = threading.Event()
        self.errors = 0

    def run(self):
        while not self.done.is_set():
            try:
                alerts = self.prom.alerts()
            except OSError:
                self.errors += 1
                alerts = []
            now = time.time()
            for a in alerts:
                labels = a["labels"]
                key = labels.get("slot_name") if labels["alertname"] != "ConsumerStuck" \
                    else labels.get("application_name")
                ep = (labels["alertname"], key, parse_time(a["activeAt"]))
                seen = self.episodes.setdefault(ep, {"firing_seen": None})
                if a["state"] == "firing" and seen["firing_seen"] is None:
                    seen["firing_seen"] = now
            self.done.wait(0.25)

    def fired(self, alert, key, after, for_secs):
        """Evaluation time at which an episode that started after `after` was firing."""
        best = None
        for (name, k, active_at), seen in list(self.episodes.items()):
            if name == alert and k == key and active_at > after and seen["firing_seen"]:
                fired_at = active_at + math.ceil(for_secs / PEER_EVAL) * PEER_EVAL
                if best is None or fired_at < best:
                    best = fired_at
        return best

    def active_for(self, keys):
        return [ep for ep in self.episodes if ep[1] in keys]

    def stop(self):
        self.done.set()
        self.join(5)


class ConfirmWatcher(threading.Thread):
    """Polls the confirmed_flush_lsn of `slots` every 0.1 s and keeps, per slot, the time of
    the poll before its last change: the earliest instant the consumer's last acknowledgement
    can have landed. A consumer library may still confirm once after the consumer stopped
    (psycopg2 answers a keepalive with the server's WAL end when everything received was
    confirmed), so the stuck fault counts from the last acknowledgement the server saw."""

    def __init__(self, pg, slots):
        super().__init__(daemon=True)
        self.conn = pg.connect()
        self.slots = list(slots)
        self.lsn = {}
        self.changed = {}
        self.done = threading.Event()

    def run(self):
        cur = self.conn.cursor()
        before = time.time()
        while not self.done.is_set():
            cur.execute("SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots "
                        "WHERE slot_name = ANY(%s)", (self.slots,))
            rows = cur.fetchall()
            for name, lsn in rows:
                if self.lsn.get(name) != lsn:
                    self.lsn[name] = lsn
                    self.changed[name] = before
            before = time.time()
            self.done.wait(0.1)

    def stop(self):
        self.done.set()
        self.join(5)
        self.conn.close()


class WalWriter(threading.Thread):
    """About 1 MB/s of WAL (non-transactional logical messages in another database, which the
    slots' decoders skip) plus a tiny insert every 0.2 s in the slots' database, so healthy
    consumers have something to confirm and a stuck one falls behind by stall_min_wal quickly.
    Without `bulk`, only the tiny inserts (healthy consumers keep confirming past the WAL
    switches of the lost phase)."""

    def __init__(self, pg, bulk=True):
        super().__init__(daemon=True)
        self.bulk = pg.connect(dbname="filler") if bulk else None
        self.tick = pg.connect()
        self.done = threading.Event()

    def run(self):
        t = self.tick.cursor()
        b = self.bulk.cursor() if self.bulk else None
        while not self.done.is_set():
            if b:
                b.execute("SELECT pg_logical_emit_message(false, 'bench', repeat('x', 204800))")
            t.execute("INSERT INTO tick VALUES (1)")
            self.done.wait(0.2)

    def stop(self):
        self.done.set()
        self.join(5)
        if self.bulk:
            self.bulk.close()
        self.tick.close()


def cluster(pg_config, interval, extra):
    settings = {"shared_preload_libraries": "'cdc_health'", "cdc_health.interval": interval,
                "cdc_health.inactive_warning": "0", "cdc_health.stall_after": f"{STALL_AFTER:.0f}s",
                "cdc_health.alert_reminder_interval": "0",
                "max_replication_slots": "80", "max_wal_senders": "80", "max_connections": "150"}
    settings.update(extra)
    pg = Cluster(pg_config, name="bench-detect", settings=settings).init().start()
    pg.sql("CREATE EXTENSION cdc_health")
    return pg


def ack_consumer(pg, slot):
    proc = Child(["/usr/bin/python3", os.path.join(BENCH, "ack_consumer.py"), pg.dsn(), slot])
    pg.children.append(proc)
    return proc


def wait_active(pg, slots, timeout=60):
    wait_until(lambda: pg.one("SELECT count(*) FROM pg_replication_slots WHERE active AND "
                              "slot_name = ANY(%s)", (list(slots),)) == len(slots),
               timeout=timeout, what="consumers to connect")


class Watchers:
    """Both monitors of one cluster: the peer (exporter, Prometheus and a poller of its
    alerts) and cdc_health's NOTIFYs. On a failure half-way, what started is stopped."""

    def __init__(self, pg):
        self.exporter = self.prom = self.poller = self.notes = None
        try:
            self.exporter = Exporter(pg)
            self.prom = Prometheus([self.exporter.target], stall_bytes=STALL_MIN_WAL,
                                   stall_for=f"{STALL_AFTER:.0f}s")
            self.poller = AlertPoller(self.prom)
            self.poller.start()
            self.notes = NotifyRecorder(pg)
            self.notes.start()
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for thing in (self.notes, self.poller, self.prom, self.exporter):
            if thing is not None:
                thing.stop()


def wait_quiet(pg, prom, poller, slots, interval_s):
    """Until neither cdc_health nor the peer has an open alert on `slots` (setup leaves some:
    a slot is inactive between its creation and its consumer's connection) and the peer has
    scraped the healthy state twice."""
    start = time.time()
    why = {}

    def quiet():
        open_alerts = pg.sql("SELECT subject, finding FROM cdc_health.alerts WHERE resolved_at "
                             "IS NULL AND subject = ANY(%s)", ([f"slot:{s}" for s in slots],))
        firing = [(a["labels"]["alertname"], a["labels"].get("slot_name")
                   or a["labels"].get("application_name")) for a in prom.alerts()
                  if (a["labels"].get("slot_name") in slots
                      or a["labels"].get("application_name") in slots)]
        why.update(cdc=open_alerts, peer=firing)
        return not open_alerts and not firing and time.time() - start > 2 * PEER_SCRAPE
    try:
        wait_until(quiet, timeout=120 + 4 * interval_s, interval=0.5,
                   what="no open alert on the slots under test")
    except AssertionError as e:
        raise AssertionError(f"{e}: still open {why}") from None


def consumer_phase(pg_config, interval, trials, spread):
    """killed and stuck faults, `trials` of each, on one cluster."""
    pg = cluster(pg_config, interval, {})
    watchers = wal = watcher = None
    try:
        pg.sql("CREATE DATABASE filler")
        pg.sql("CREATE TABLE tick (x int)")
        killed = [f"killed_{i}" for i in range(trials)]
        stuck = [f"stuck_{i}" for i in range(trials)]
        controls = ["healthy_recv_0", "healthy_recv_1", "healthy_ack_0", "healthy_ack_1"]
        for s in killed + stuck + controls:
            pg.create_logical_slot(s)
        procs = {}
        for s in killed + controls[:2]:
            procs[s] = pg.recvlogical(s)
        for s in stuck + controls[2:]:
            procs[s] = ack_consumer(pg, s)
        wait_active(pg, killed + stuck + controls)
        watchers = Watchers(pg)
        wal = WalWriter(pg)
        wal.start()
        watcher = ConfirmWatcher(pg, stuck)
        watcher.start()
        wait_quiet(pg, watchers.prom, watchers.poller, killed + stuck + controls,
                   seconds(interval))
        # Faults at random instants over `spread` seconds, kinds interleaved.
        plan = sorted([(random.uniform(0, spread), "killed", s) for s in killed]
                      + [(random.uniform(0, spread), "stuck", s) for s in stuck])
        log(f"  detection {interval}: {len(plan)} consumer faults over {spread:.0f}s")
        t0 = time.time()
        faults = []
        for offset, kind, slot in plan:
            delay = t0 + offset - time.time()
            if delay > 0:
                time.sleep(delay)
            if kind == "killed":
                procs[slot].kill(signal.SIGKILL)
            else:
                procs[slot].proc.send_signal(signal.SIGUSR1)
            faults.append((kind, slot, time.time()))
        # The last acknowledgement of a stuck consumer may land a little after its signal.
        time.sleep(3)
        shifts = []
        for k, (kind, slot, at) in enumerate(faults):
            if kind == "stuck" and watcher.changed.get(slot, 0) > at:
                shifts.append(watcher.changed[slot] - at)
                faults[k] = (kind, slot, watcher.changed[slot])
        results = collect(faults, watchers.notes, watchers.poller, seconds(interval))
        results["stuck"]["last_ack_after_signal"] = {"count": len(shifts),
                                                     "max": max(shifts, default=0.0)}
        results["false_alerts"] = false_alerts(watchers.notes, watchers.poller, controls, t0)
        return results
    finally:
        for thing in (watcher, wal, watchers):
            if thing is not None:
                thing.stop()
        pg.close()


def lost_phase(pg_config, interval, trials):
    """Slots invalidated by CHECKPOINT, one after another, the others kept reserved."""
    pg = cluster(pg_config, interval, {"max_slot_wal_keep_size": "64MB"})
    watchers = ticks = None
    try:
        pg.sql("CREATE TABLE tick (x int)")
        victims = [f"lost_{i}" for i in range(trials)]
        controls = ["healthy_recv_0", "healthy_recv_1"]
        for s in victims + controls:
            pg.create_logical_slot(s)
        for s in controls:
            pg.recvlogical(s)
        watchers = Watchers(pg)
        ticks = WalWriter(pg, bulk=False)
        ticks.start()
        # Both monitors see every victim (healthy but unconsumed) before the first loss.
        time.sleep(2 * PEER_SCRAPE + 1)
        log(f"  detection {interval}: {trials} slots lost by CHECKPOINT")
        t0 = time.time()
        advancing = list(victims)
        frozen = []
        faults = []
        remaining = set(victims)
        steps = 0
        while remaining and steps < trials + 20:
            steps += 1
            pg.sql("INSERT INTO tick VALUES (1)")
            pg.sql("SELECT pg_switch_wal()")
            pg.sql("CHECKPOINT")
            at = time.time()
            lost = {r[0] for r in pg.sql("SELECT slot_name FROM pg_replication_slots "
                                         "WHERE wal_status = 'lost'")}
            for slot in sorted(remaining & lost):
                if slot not in frozen:
                    raise AssertionError(f"{slot} was lost while it was being advanced")
                faults.append(("lost", slot, at))
                remaining.discard(slot)
            for slot in advancing:
                pg.sql("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (slot,))
            if advancing:
                frozen.append(advancing.pop(0))
            time.sleep(random.uniform(0.5, 2.5))
        results = collect(faults, watchers.notes, watchers.poller, seconds(interval))
        results["false_alerts"] = false_alerts(watchers.notes, watchers.poller, controls, t0)
        return results
    finally:
        for thing in (ticks, watchers):
            if thing is not None:
                thing.stop()
        pg.close()


def collect(faults, notes, poller, interval_s):
    """Waits until every fault was detected by both (or their time is up) and returns, per
    fault kind, the latencies beyond the finding's threshold."""
    last = max(at for _, _, at in faults)
    # cdc_health: threshold + 3 intervals; the peer: threshold + scrape + 2 evaluations + slack.
    cdc_deadline = last + STALL_AFTER + 3 * interval_s + 5
    peer_deadline = last + STALL_AFTER + PEER_SCRAPE + 2 * PEER_EVAL + 5

    def detections():
        cdc, peer = {}, {}
        for kind, slot, at in faults:
            finding, threshold, alert, _, for_secs = FAULTS[kind]
            c = notes.first(slot, finding, at)
            p = poller.fired(alert, slot, at, for_secs)
            cdc[slot] = None if c is None else c - at - threshold
            peer[slot] = None if p is None else p - at - threshold
        return cdc, peer

    while True:
        cdc, peer = detections()
        now = time.time()
        if (all(v is not None for v in cdc.values()) or now > cdc_deadline) and \
                (all(v is not None for v in peer.values()) or now > peer_deadline):
            break
        time.sleep(0.5)
    out = {}
    for kind in sorted({k for k, _, _ in faults}):
        slots = [s for k, s, _ in faults if k == kind]
        finding, threshold, alert, _, for_secs = FAULTS[kind]
        c = [cdc[s] for s in slots if cdc[s] is not None]
        p = [peer[s] for s in slots if peer[s] is not None]
        out[kind] = {"trials": len(slots), "finding": finding, "threshold": threshold,
                     "peer_alert": alert, "peer_for": for_secs,
                     "cdc": stats(c), "cdc_missed": len(slots) - len(c), "cdc_raw": c,
                     "peer": stats(p), "peer_missed": len(slots) - len(p), "peer_raw": p}
    return out


def false_alerts(notes, poller, controls, since):
    """Alerts either raised, after `since`, on healthy slots that had no fault."""
    return {"cdc": sorted(f"{p['subject'][5:]}: {p['finding']}"
                          for p in notes.raised_for(controls, since)),
            "peer": sorted(f"{ep[1]}: {ep[0]}" for ep in poller.active_for(set(controls))
                           if ep[2] > since)}


def measure(pg_config, interval, trials, spread=40.0, parallel=False):
    """Every fault at one cdc_health.interval; returns {fault: figures, ...}. With `parallel`
    the consumer faults and the lost slots run at the same time on two clusters (quicker,
    noisier: for smoke runs)."""
    start = time.time()
    if parallel:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            c = pool.submit(consumer_phase, pg_config, interval, trials, spread)
            lo = pool.submit(lost_phase, pg_config, interval, trials)
            consumer, lost = c.result(), lo.result()
    else:
        consumer = consumer_phase(pg_config, interval, trials, spread)
        lost = lost_phase(pg_config, interval, trials)
    faults = {k: v for k, v in consumer.items() if k != "false_alerts"}
    faults.update({k: v for k, v in lost.items() if k != "false_alerts"})
    return {"interval": interval, "trials": trials, "faults": faults, "parallel": parallel,
            "false_alerts": {"consumer_phase": consumer["false_alerts"],
                             "lost_phase": lost["false_alerts"]},
            "seconds": time.time() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-config", default=PG15_CONFIG)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--spread", type=float, default=40.0)
    args = parser.parse_args()
    r = measure(args.pg_config, args.interval, args.trials, args.spread)
    for kind, f in r["faults"].items():
        def fmt(s):
            return "none" if s is None else f"median {s['median']:.2f}s p95 {s['p95']:.2f}s (n={s['n']})"
        print(f"{kind:7} cdc_health {fmt(f['cdc'])}, missed {f['cdc_missed']} | "
              f"peer {fmt(f['peer'])}, missed {f['peer_missed']}")
    print(f"false alerts: {r['false_alerts']}; {r['seconds']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
