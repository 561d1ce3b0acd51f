"""Faults the worker must survive, one test a row (README, "Reliability"): each asserts that
nothing announced was lost, no alert is open twice, and monitoring resumed."""

import os
import signal
import time

from pgcluster import wait_for

WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.mirror_interval": "1s",
    "cdc_health.inactive_warning": "0",
    "cdc_health.alert_holddown": "0",
}


def status(pg):
    cols = ["running", "pid", "passes", "failed_passes", "skipped_passes"]
    row = pg.sql(f"SELECT {', '.join(cols)} FROM cdc_health.worker_status()")[0]
    return dict(zip(cols, row))


def no_alert_open_twice(pg):
    assert pg.one("SELECT count(*) FROM (SELECT subject, finding FROM cdc_health.alerts "
                  "WHERE resolved_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1) d") == 0


def test_a_pass_that_cannot_finish_gives_up_at_pass_timeout(make_cluster):
    """Statement timeouts are not armed by SPI: the worker arms the timer per pass. Behind an
    ACCESS EXCLUSIVE lock on the alerts table (lock_timeout is 5s, the pass limit 2s here), a
    pass is cancelled at the limit; cdc_health() goes on, and so do the passes afterwards."""
    pg = make_cluster({**WORKER, "cdc_health.pass_timeout": "2s"})
    wait_for(lambda: status(pg)["running"], what="the worker")
    pg.create_logical_slot("watched")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts"), what="a first alert")
    failed = status(pg)["failed_passes"]
    holder = pg.connect(autocommit=False)
    holder.cursor().execute("LOCK TABLE cdc_health.alerts IN ACCESS EXCLUSIVE MODE")
    locked_at = time.monotonic()
    wait_for(lambda: status(pg)["failed_passes"] > failed, timeout=15,
             what="a pass cancelled while the table is locked")
    assert time.monotonic() - locked_at < 5, "cancelled by the pass limit, before lock_timeout"
    assert "canceling statement due to statement timeout" in pg.log_tail(200)
    assert pg.health("watched")["findings"] == ["inactive"], "cdc_health() still answers"
    holder.rollback()
    holder.close()
    failed = status(pg)["failed_passes"]
    passes = status(pg)["passes"]
    wait_for(lambda: status(pg)["passes"] >= passes + 3, what="passes after the lock")
    assert status(pg)["failed_passes"] == failed
    no_alert_open_twice(pg)


HANG = """
CREATE FUNCTION public.stubborn() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        BEGIN
            PERFORM pg_catalog.pg_sleep(0.2);
        EXCEPTION WHEN query_canceled THEN NULL;  -- ignores every cancellation
        END;
    END LOOP;
END $$;
CREATE VIEW public.hangs AS SELECT public.stubborn() AS at;
"""


def test_a_probe_that_ignores_cancellation_is_ended_and_quarantined(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.probe_timeout": "1s"})
    pg.sql(HANG)
    pg.sql("CREATE TABLE fine (at timestamptz DEFAULT now())")
    pg.sql("INSERT INTO fine DEFAULT VALUES")
    pg.sql("SELECT cdc_health.add_freshness_check('fine', 'fine', 'at', '1h')")
    listener = pg.listen()
    old_pid = pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdc_health mirrors'")
    pg.sql("SELECT cdc_health.add_freshness_check('stuck', 'hangs', 'at', '1h')")
    raised, waited = listener.wait(timeout=40, event="raised", subject="mirror:stuck",
                                   finding="probe_failed")
    print(f"probe_failed raised {waited:.1f}s after the check was added")
    row = pg.sql("SELECT error, quarantined_at IS NOT NULL FROM cdc_health.mirror_checks "
                 "WHERE name = 'stuck'")[0]
    assert row[0].startswith("quarantined") and row[1], row
    new_pid = wait_for(lambda: pg.one("SELECT pid FROM pg_stat_activity "
                                      "WHERE backend_type = 'cdc_health mirrors'"),
                       what="the mirror worker back")
    assert new_pid != old_pid, "the hung mirror worker was terminated and started again"
    # The other check is probed again; the quarantined one is left alone.
    checked = pg.one("SELECT checked_at FROM cdc_health.mirror_checks WHERE name = 'stuck'")
    fine = pg.one("SELECT checked_at FROM cdc_health.mirror_checks WHERE name = 'fine'")
    wait_for(lambda: pg.one("SELECT checked_at > %s FROM cdc_health.mirror_checks "
                            "WHERE name = 'fine'", (fine,)), what="the healthy check probed again")
    time.sleep(2)
    assert pg.one("SELECT checked_at FROM cdc_health.mirror_checks WHERE name = 'stuck'") == checked
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE subject = 'mirror:stuck' "
                  "AND resolved_at IS NULL") == 1
    no_alert_open_twice(pg)
    listener.close()


def test_fast_shutdown_ends_a_probe_that_ignores_cancellation(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.probe_timeout": "60s"})
    pg.sql(HANG)
    pg.sql("SELECT cdc_health.add_freshness_check('stuck', 'hangs', 'at', '1h')")
    mirror = wait_for(lambda: pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = "
                                     "'cdc_health mirrors' AND wait_event = 'PgSleep'"),
                      what="the mirror worker inside the stubborn probe")
    os.kill(mirror, signal.SIGTERM)  # what pg_terminate_backend sends
    wait_for(lambda: pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = "
                            "'cdc_health mirrors'") != mirror, timeout=15,
             what="SIGTERM to end the probing mirror worker")
    wait_for(lambda: pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = "
                            "'cdc_health mirrors' AND wait_event = 'PgSleep'"),
             what="the restarted worker in the stubborn probe again")
    started = time.monotonic()
    pg.stop_server("fast")
    assert time.monotonic() - started < 10
    assert not os.path.exists(os.path.join(pg.datadir, "postmaster.pid"))


def test_a_postmaster_crash_loses_no_announced_alert(make_cluster):
    pg = make_cluster(WORKER)
    wait_for(lambda: status(pg)["running"], what="the worker")
    listener = pg.listen()
    pg.create_logical_slot("before_crash")
    raised, _ = listener.wait(event="raised", subject="slot:before_crash", finding="inactive")
    listener.close()
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.slot_history "
                            "WHERE slot_name = 'before_crash'"), what="history")
    history = pg.one("SELECT count(*) FROM cdc_health.slot_history")
    pg.stop_server("immediate")  # no shutdown checkpoint: crash recovery at start
    pg.start()
    # What was announced is in the table, once.
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE id = %s", (raised["alert_id"],))
    wait_for(lambda: status(pg)["running"], what="the worker after recovery")
    listener = pg.listen()
    pg.create_logical_slot("after_crash")
    listener.wait(event="raised", subject="slot:after_crash", finding="inactive")
    listener.close()
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE subject = 'slot:before_crash' "
                  "AND resolved_at IS NULL") == 1
    assert pg.one("SELECT count(*) FROM cdc_health.slot_history") >= history
    no_alert_open_twice(pg)


def test_an_spi_error_in_a_pass_is_logged_and_monitoring_resumes(make_cluster):
    pg = make_cluster(WORKER)
    wait_for(lambda: status(pg)["running"], what="the worker")
    pg.create_logical_slot("steady")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts"), what="a first alert")
    failed = status(pg)["failed_passes"]
    # Reading the open alerts now fails inside every pass.
    pg.sql("ALTER TABLE cdc_health.alerts RENAME COLUMN clear_since TO clear_since_moved")
    pg.create_logical_slot("during_fault")
    wait_for(lambda: status(pg)["failed_passes"] > failed, what="a failed pass")
    assert "monitoring pass failed" in pg.log_tail(200)
    assert pg.health("during_fault")["findings"] == ["inactive"], "cdc_health() still answers"
    pg.sql("ALTER TABLE cdc_health.alerts RENAME COLUMN clear_since_moved TO clear_since")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts "
                            "WHERE subject = 'slot:during_fault'"), what="monitoring resumed")
    no_alert_open_twice(pg)


def test_slots_dropped_mid_pass_and_500_at_once(make_cluster):
    pg = make_cluster({**WORKER, "max_replication_slots": "600", "max_wal_senders": "20"})
    wait_for(lambda: status(pg)["running"], what="the worker")
    failed = status(pg)["failed_passes"]
    # Churn: slots come and go while passes run every second.
    deadline = time.monotonic() + 5
    i = 0
    while time.monotonic() < deadline:
        pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (f"churn_{i}",))
        if i:
            pg.sql("SELECT pg_drop_replication_slot(%s)", (f"churn_{i - 1}",))
        i += 1
    pg.sql("SELECT pg_create_physical_replication_slot('many_' || g) "
           "FROM generate_series(1, 500) g")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts WHERE subject LIKE "
                            "'slot:many\\_%%' AND resolved_at IS NULL") == 500, timeout=60,
             what="500 alerts")
    pg.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
           "WHERE slot_name LIKE 'many\\_%%'")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts WHERE subject LIKE "
                            "'slot:many\\_%%' AND resolved_at IS NULL") == 0, timeout=60,
             what="500 alerts resolved")
    assert status(pg)["failed_passes"] == failed
    assert status(pg)["running"]
    no_alert_open_twice(pg)
