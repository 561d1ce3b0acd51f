"""cdc_health on a live cluster: healthy, abandoned and doomed replication slots, consumers in
a crash loop or failing on a missing publication, a ClickHouse mirror whose writer stops;
then pg_wal on a small volume filling behind an abandoned slot, and the configuration audit.

Started by scripts/demo.sh. Everything it starts is stopped at the end unless --keep is given.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from chserver import ClickHouse, PeerDB  # noqa: E402
from pgcluster import RUN_DIR, Child, Cluster, wait_for  # noqa: E402

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")

SETTINGS = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.stall_after": "5s",
    "max_slot_wal_keep_size": "160MB",
    "max_wal_size": "64MB",
    "cdc_health.retained_wal_warning": "128MB",
    "cdc_health.inactive_warning": "5s",
    "cdc_health.inactive_critical": "1min",
    "cdc_health.mirror_interval": "1s",
    # A short window, so that the demo's minute of growth is enough for a forecast.
    "cdc_health.forecast_window": "30s",
}

MIRRORS = """SELECT name, status, findings, date_trunc('second', lag) AS lag, row_drift,
       source_rows, target_rows, summary FROM cdc_health.mirrors()"""

QUERY = """SELECT slot_name, slot_type AS type, active, wal_status, status, findings,
       pg_size_pretty(retained_wal_bytes) AS retained, pg_size_pretty(safe_wal_size) AS safe,
       date_trunc('second', inactive_for) AS inactive_for,
       pg_size_pretty(growth_bytes_per_sec::bigint) || '/s' AS growth,
       date_trunc('second', eta_to_lost) AS eta_to_lost
FROM cdc_health()"""


def notes(listener):
    time.sleep(2.5)  # two worker passes
    listener.drain(0.1)
    for note in listener.received:
        print(f"  NOTIFY cdc_health: {note['event']} {note['severity']} {note['finding']} "
              f"on {note['subject']} (alert {note['alert_id']})")
    listener.received.clear()


def psql(pg, query):
    subprocess.run([pg.bin("psql"), "-X", "-P", "pager=off", "-d", pg.dsn(), "-c", query],
                   check=True)


def show(pg, title, listener=None):
    if listener:
        notes(listener)
    print(f"\n--- {title}\n")
    psql(pg, QUERY)
    for row in pg.health():
        if row["status"] != "ok":
            print(f"  {row['slot_name']} [{row['status']}]: {row['summary']}")
            print(f"      what to do: {row['remediation']}")


def step_wal(pg, segments, checkpoint):
    """Writes WAL a segment at a time; checkpoints let the healthy consumer's slot advance."""
    for _ in range(segments):
        pg.grow_wal(1, checkpoint=checkpoint)
        time.sleep(1.0)


def forecast_demo(pg, listener):
    """Orders keep coming at a steady rate while debezium_down is abandoned: its retained WAL
    grows steadily and the forecast of its loss counts down."""
    print("\n--- 4b. order events keep coming, about 2 MB of WAL a second: the forecast "
          "counts down\n")
    pg.sql("CREATE TABLE order_events (id bigserial PRIMARY KEY, payload text)")
    for i in range(14):
        pg.sql("INSERT INTO order_events (payload) SELECT repeat('y', 400) "
               "FROM generate_series(1, 4000)")
        time.sleep(1.0)
        row = pg.health("debezium_down")
        eta = row["eta_to_lost"]
        growth = row["growth_bytes_per_sec"]
        print(f"  {i + 1:2d}s  retained {row['retained_wal_bytes'] >> 20:4d} MB  "
              f"safe {(row['safe_wal_size'] or 0) >> 20:4d} MB  "
              f"growth {'-' if growth is None else f'{growth / (1 << 20):.1f} MB/s':>9}  "
              f"eta_to_lost {'-' if eta is None else str(eta).split('.')[0]}  "
              f"{','.join(row['findings'])}")
    notes(listener)


def mirror_demo(pg, listener):
    """A PeerDB-shaped mirror of orders in a real ClickHouse server; then its writer stops."""
    ch = ClickHouse(name="demo-ch").start()
    try:
        mirror_steps(pg, ch, listener)
    except BaseException:
        ch.destroy()  # main() only knows of the server once this returns
        raise
    return ch


def mirror_steps(pg, ch, listener):
    pg.sql("ALTER TABLE orders ADD COLUMN started_at timestamptz NOT NULL DEFAULT now()")
    writer = PeerDB(pg, ch, "orders", "default.orders").create()
    writer.sync()
    pg.sql(f"CREATE SERVER clickhouse FOREIGN DATA WRAPPER cdc_health_clickhouse "
           f"OPTIONS (url '{ch.url}', timeout '5s')")
    pg.sql(f"CREATE USER MAPPING FOR PUBLIC SERVER clickhouse "
           f"OPTIONS (user '{ch.user}', password '{ch.password}')")
    pg.sql("CREATE FOREIGN TABLE mirror_orders (id bigint, started_at timestamptz) "
           "SERVER clickhouse OPTIONS (query 'SELECT id, started_at FROM default.orders FINAL "
           "WHERE _peerdb_is_deleted = 0')")
    pg.sql("SELECT cdc_health.add_mirror('orders', 'orders', 'started_at', 'mirror_orders', "
           "'started_at', max_lag => '3s', slot_name => 'peerdb_healthy')")
    wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors()") == "ok",
             what="the mirror check")
    print(f"\n--- 7. orders mirrored into ClickHouse {ch.query('SELECT version()').strip()} "
          "(PeerDB-shaped ReplacingMergeTree), checked through the cdc_health_clickhouse "
          "wrapper\n")
    psql(pg, MIRRORS)
    for _ in range(6):
        pg.sql("INSERT INTO orders (note) VALUES ('late order')")
        time.sleep(1)
    notes(listener)
    print("\n--- 8. the mirror's writer stopped while orders kept coming: the slot is fine, "
          "the mirror is not\n")
    psql(pg, MIRRORS)


def consumer_demo(pg, listener):
    """A consumer in a crash loop, and one failing on a publication that does not exist: each
    named with the error the server saw and what to do."""
    pg.create_logical_slot("peerdb_looping")
    pg.sql("CREATE PUBLICATION orders_pub FOR TABLE orders")
    pg.create_logical_slot("debezium_nopub", plugin="pgoutput")
    looping = Child(["/usr/bin/python3", os.path.join(TESTS, "looping_consumer.py"), pg.dsn(),
                     "peerdb_looping", "2", "1", "no"])
    # pg_recvlogical retries after each error, as a CDC consumer does.
    nopub = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                   "postgres", "-d", "postgres", "--slot", "debezium_nopub", "--start", "-o",
                   "proto_version=1", "-o", "publication_names=orders_publication", "-f",
                   "/dev/null", "-s", "1"])
    for _ in range(14):
        pg.sql("INSERT INTO orders (note) VALUES ('a small order')")
        time.sleep(1)
    show(pg, "3b. peerdb_looping's consumer dies every 2s without confirming; debezium_nopub's "
             "names a publication that does not exist", listener)
    psql(pg, "SELECT slot_name, detail->'consumer'->'sessions' AS sessions, "
             "detail->'consumer'->'last_error'->>'sqlstate' AS sqlstate, "
             "detail->'consumer'->'last_error'->>'message' AS last_error "
             "FROM cdc_health() WHERE slot_name IN ('peerdb_looping', 'debezium_nopub')")
    looping.stop()
    nopub.stop()
    for slot in ("peerdb_looping", "debezium_nopub"):
        wait_for(lambda: not pg.health(slot)["active"], what=f"{slot}'s consumer to go")
        pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
    print("  (both consumers stopped and their slots dropped)")


def wal_volume_demo(pg_config):
    """pg_wal on a small volume of its own with no WAL budget (PostgreSQL's default), an
    abandoned slot and steady writes: wal_usage() counts down to the volume being full, which
    would stop the server; then config_audit() names a published table without a key."""
    if os.geteuid() != 0:
        print("\n--- 8. (skipped: mounting a small volume for pg_wal needs root)")
        return
    volume = tempfile.mkdtemp(prefix="demo-volume-", dir=RUN_DIR)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", volume], check=True)
    shutil.chown(volume, "postgres", "postgres")
    pg = None
    try:
        pg = Cluster(pg_config, name="demo-wal", waldir=os.path.join(volume, "pg_wal"),
                     settings={**SETTINGS, "max_slot_wal_keep_size": "-1",
                               "wal_sender_timeout": "60s"}).init().start()
        pg.sql("CREATE EXTENSION cdc_health")
        listener = pg.listen()
        pg.create_logical_slot("airbyte_abandoned")
        pg.sql("CREATE TABLE events (v text)")
        print("\n--- 8. a second cluster: pg_wal on a 256 MB volume of its own, no "
              "max_slot_wal_keep_size, slot airbyte_abandoned never consumed, about 5 MB of WAL a "
              "second\n")
        for i in range(16):
            pg.sql("INSERT INTO events SELECT repeat('z', 1000) FROM generate_series(1, 5000)")
            time.sleep(1.0)
            if i % 2:
                u = pg.sql("SELECT disk_free_bytes >> 20, wal_bytes >> 20, largest_slot, "
                           "fill_rate_bytes_per_second, date_trunc('second', eta_to_full), "
                           "status FROM cdc_health.wal_usage()")[0]
                rate = "-" if u[3] is None else f"{u[3] / (1 << 20):.1f} MB/s"
                print(f"  {i + 1:2d}s  free {u[0]:4d} MB  pg_wal {u[1]:4d} MB (held by {u[2]})  "
                      f"filling {rate:>9}  eta_to_full {u[4] or '-'}  {u[5]}")
        notes(listener)
        psql(pg, "SELECT status, summary, remediation FROM cdc_health.wal_usage()")
        pg.sql("CREATE TABLE audit_log (at timestamptz, what text)")  # no primary key
        pg.sql("CREATE PUBLICATION everything FOR ALL TABLES")
        print("\n--- 9. CREATE PUBLICATION everything FOR ALL TABLES, and a table "
              "audit_log without a primary key: config_audit()\n")
        psql(pg, "SELECT check_code, severity, object, summary FROM cdc_health.config_audit()")
        try:
            pg.sql("UPDATE audit_log SET what = 'x'")
        except Exception as e:  # noqa: BLE001 - the error is the point
            print(f"  and indeed: UPDATE audit_log fails: {str(e).splitlines()[0]}")
        listener.close()
    finally:
        if pg:
            pg.close()
        subprocess.run(["umount", volume], check=False)
        os.rmdir(volume)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-config", default="/usr/lib/postgresql/15/bin/pg_config")
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster and the healthy consumer running to explore")
    args = parser.parse_args()

    pg = Cluster(args.pg_config, name="demo", settings=SETTINGS).init().start()
    ch = None
    try:
        print(f"PostgreSQL {pg.version} on port {pg.port}, cdc_health preloaded (worker every "
              "1s); max_slot_wal_keep_size = 160MB, max_wal_size = 64MB")
        pg.sql("CREATE EXTENSION cdc_health")
        listener = pg.listen()
        print("LISTEN cdc_health: alerts are printed as they arrive")
        pg.sql("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
        pg.create_logical_slot("peerdb_healthy")
        pg.create_logical_slot("debezium_down")
        pg.recvlogical("peerdb_healthy")
        debezium = pg.recvlogical("debezium_down")
        pg.sql("INSERT INTO orders (note) SELECT 'order ' || g FROM generate_series(1, 1000) g")
        wait_for(lambda: all(r["flush_lag_bytes"] < 1 << 20 for r in pg.health()),
                 what="consumers to confirm")
        show(pg, "1. two logical slots, each with a real pg_recvlogical consumer: all ok", listener)

        debezium.kill()
        pg.sql("SELECT pg_create_physical_replication_slot('standby_forgotten')")
        wait_for(lambda: not pg.health("debezium_down")["active"], what="consumer to go")
        time.sleep(4)
        show(pg, "2. debezium_down's consumer killed; a physical slot created and never used",
             listener)

        # A consumer that reads the stream but never confirms: every active-based check is green.
        pg.create_logical_slot("electric_stuck")
        pg.never_ack_consumer("electric_stuck")
        for _ in range(8):
            pg.sql("INSERT INTO orders (note) SELECT repeat('x', 500) FROM generate_series(1, 500)")
            time.sleep(1)
        show(pg, "3. electric_stuck: connected, reading, confirming nothing while orders arrive",
             listener)

        consumer_demo(pg, listener)

        step_wal(pg, 7, checkpoint=True)
        show(pg, "4. 112 MB of WAL later: debezium_down keeps it all, past max_wal_size", listener)

        # No automatic checkpoint may remove the WAL before we look at it.
        pg.set_config(max_wal_size="1GB")
        forecast_demo(pg, listener)
        step_wal(pg, 4, checkpoint=False)
        show(pg, "5. past max_slot_wal_keep_size: the next checkpoint will invalidate it", listener)

        pg.sql("CHECKPOINT")
        show(pg, "6. CHECKPOINT: debezium_down is lost for good; peerdb_healthy never noticed",
             listener)

        ch = mirror_demo(pg, listener)

        print("\n--- cdc_health.alerts\n")
        psql(pg, "SELECT id, subject, finding, severity, raised_at::time(0), "
                 "resolved_at::time(0), notifications FROM cdc_health.alerts ORDER BY id")
        listener.close()

        wal_volume_demo(args.pg_config)

        if args.keep:
            pg.children = []  # leave the healthy consumer running with the cluster
            print(f"\nKept running. Explore with:\n  psql '{pg.dsn()}'\n"
                  f"Stop it with:\n  runuser -u postgres -- {pg.bin('pg_ctl')} -D {pg.datadir} "
                  f"-m immediate stop && rm -rf {pg.base}\n"
                  f"  kill {ch.proc.pid} && rm -rf {ch.dir}   # ClickHouse")
    finally:
        if not args.keep:
            pg.close()
            if ch:
                ch.destroy()
            print("\nDemo cluster and consumers stopped (run with --keep to explore).")


if __name__ == "__main__":
    main()
