"""What newer majors changed: decoding spills (pg_stat_replication_slots, 14+), logical slots on
standbys (16), failover slots and their synchronisation (17) and 18's
idle_replication_slot_timeout."""

import os
import threading
import time

import pytest

from pgcluster import wait_for

MB = 1 << 20

WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.inactive_warning": "1h",
    "cdc_health.alert_holddown": "1s",
    "max_wal_size": "1GB",
}


def needs_major(pg_config, major, why):
    from pgcluster import pg_config_value
    if int(pg_config_value(pg_config, "--version").split()[1].split(".")[0]) < major:
        pytest.skip(why)


def passes_after(pg, n):
    start = pg.one("SELECT passes FROM cdc_health.worker_status()")
    wait_for(lambda: pg.one("SELECT passes FROM cdc_health.worker_status()") >= start + n,
             what=f"{n} passes")


def started(make_cluster, **settings):
    pg = make_cluster({**WORKER, **settings})
    wait_for(lambda: pg.one("SELECT extension_present FROM cdc_health.worker_status()"),
             what="the worker")
    return pg


def test_decoding_spill_is_raised_with_its_figures(make_cluster):
    pg = started(make_cluster, logical_decoding_work_mem="64kB",
                 **{"cdc_health.spill_warning": "1MB"})
    pg.create_logical_slot("spilling")
    pg.recvlogical("spilling")
    pg.sql("CREATE TABLE big (id int, payload text)")
    # The worker must have sampled the slot before the spill: the rate is a difference.
    passes_after(pg, 3)
    assert "decoding_spill" not in pg.health("spilling")["findings"]
    listener = pg.listen()
    # One large transaction: far more than 64kB of changes to decode at once.
    pg.sql("INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 50000) i")
    raised, _ = listener.wait(timeout=60, event="raised", subject="slot:spilling",
                              finding="decoding_spill")
    listener.close()
    row = pg.health("spilling")
    assert "decoding_spill" in row["findings"], row
    decoding = row["detail"]["decoding"]
    assert decoding["spill_bytes"] > MB and decoding["spill_txns"] >= 1, decoding
    # total_* count finished transactions: reported later than a spill in progress.
    assert {"stream_bytes", "total_txns", "total_bytes"} <= set(decoding)
    alert = pg.sql("SELECT severity, summary, remediation FROM cdc_health.alerts "
                   "WHERE finding = 'decoding_spill'")[0]
    assert alert[0] == "warning" and "per minute" in alert[1], alert
    assert "logical_decoding_work_mem" in alert[2]
    # (It clears once the last minute of samples holds no spill: rules/src/history.rs tests.)


def test_spill_warning_zero_turns_it_off(make_cluster):
    pg = started(make_cluster, logical_decoding_work_mem="64kB",
                 **{"cdc_health.spill_warning": "0"})
    pg.create_logical_slot("quiet_spill")
    pg.recvlogical("quiet_spill")
    passes_after(pg, 3)
    pg.sql("CREATE TABLE big (id int, payload text)")
    pg.sql("INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 50000) i")
    wait_for(lambda: (pg.health("quiet_spill")["detail"]["decoding"] or {}).get("spill_bytes", 0)
             > MB, timeout=60, what="the spill in the statistics")
    passes_after(pg, 3)
    assert "decoding_spill" not in pg.health("quiet_spill")["findings"]


def test_idle_timeout_counts_down_then_names_the_cause(make_cluster, pg_config):
    needs_major(pg_config, 18, "idle_replication_slot_timeout is new in PostgreSQL 18")
    pg = started(make_cluster, idle_replication_slot_timeout="30s", wal_level="logical")
    pg.create_logical_slot("napping")
    row = wait_for(lambda: (r := pg.health("napping")) and "idle_timeout_soon" in r["findings"]
                   and r, what="idle_timeout_soon")
    assert row["status"] == "critical", row  # under cdc_health.eta_critical (15min)
    eta = row["eta_to_lost"].total_seconds()
    assert 0 <= eta <= 30, row
    assert "idle_replication_slot_timeout" in row["summary"]
    metrics = pg.one("SELECT cdc_health.metrics()")
    assert 'cdc_health_slot_eta_to_lost_seconds{slot_name="napping"' in metrics
    time.sleep(max(0.0, eta) + 2)
    pg.sql("CHECKPOINT")
    row = wait_for(lambda: (r := pg.health("napping")) and r["wal_status"] == "lost" and r,
                   what="the slot invalidated by the timeout")
    assert row["findings"] == ["lost"], row
    assert row["detail"]["invalidation_reason"] == "idle_timeout"
    assert "idle_replication_slot_timeout" in row["remediation"], row["remediation"]
    assert "not over its WAL budget" in row["remediation"]


def test_standby_slot_blocking_names_the_waiting_consumer(make_cluster, pg_config):
    needs_major(pg_config, 17, "failover slots and synchronized_standby_slots are new in PostgreSQL 17")
    pg = started(make_cluster)
    pg.sql("SELECT pg_create_physical_replication_slot('sb_slot', true)")
    replica = pg.standby("sb_slot")
    wait_for(lambda: pg.one("SELECT active FROM pg_replication_slots WHERE slot_name = 'sb_slot'"),
             what="the standby streaming")
    pg.set_config(synchronized_standby_slots="sb_slot")
    # A failover slot (the fifth argument) and its consumer.
    pg.sql("SELECT pg_create_logical_replication_slot('cdc', 'test_decoding', false, false, true)")
    pg.recvlogical("cdc")
    pg.sql("CREATE TABLE feed (x int)")
    pg.sql("INSERT INTO feed VALUES (1)")
    passes_after(pg, 3)
    assert "standby_slot_blocking" not in pg.health("sb_slot")["findings"]

    replica.stop_server()
    stopped = time.monotonic()
    row = None
    while time.monotonic() - stopped < 60:
        pg.sql("INSERT INTO feed VALUES (2)")
        row = pg.health("sb_slot")
        if "standby_slot_blocking" in row["findings"]:
            break
        time.sleep(0.2)
    assert row and "standby_slot_blocking" in row["findings"], row
    seen = time.monotonic() - stopped
    # The worker raises it at its next pass (interval 1s: within two intervals).
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts WHERE finding = "
                            "'standby_slot_blocking' AND resolved_at IS NULL") == 1,
             timeout=10, interval=0.05, what="the standby_slot_blocking alert")
    print(f"standby stopped to standby_slot_blocking: {seen:.1f} s in cdc_health(), "
          f"{time.monotonic() - stopped:.1f} s to the alert")
    assert row["status"] == "critical"
    assert "cdc (" in row["summary"] and "synchronized_standby_slots" in row["summary"], row
    assert "synchronized_standby_slots" in row["remediation"]
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE finding = 'standby_slot_blocking' "
                  "AND subject = 'slot:sb_slot' AND resolved_at IS NULL") == 1
    # The consumer's own slot is not blamed: it is connected and waits through no fault of its own.
    assert "standby_slot_blocking" not in pg.health("cdc")["findings"]

    replica.start()
    wait_for(lambda: "standby_slot_blocking" not in pg.health("sb_slot")["findings"], timeout=60,
             what="the finding to clear once the standby is back")


def test_failover_unready_names_the_first_gap(make_cluster, pg_config):
    needs_major(pg_config, 17, "failover slots are new in PostgreSQL 17")
    pg = started(make_cluster)
    pg.sql("SELECT pg_create_logical_replication_slot('plain', 'test_decoding')")
    pg.sql("SELECT pg_create_logical_replication_slot('fo', 'test_decoding', false, false, true)")
    # No standby streams from here: no failover is expected (cdc_health.expect_failover auto).
    assert "failover_unready" not in pg.health("plain")["findings"]
    pg.set_config(cdc_health__expect_failover="on")
    wait_for(lambda: "failover_unready" in pg.health("plain")["findings"], what="expect_failover on")
    pg.set_config(cdc_health__expect_failover="auto")

    pg.sql("SELECT pg_create_physical_replication_slot('sb', true)")
    pg.standby("sb")
    wait_for(lambda: pg.one("SELECT active FROM pg_replication_slots WHERE slot_name = 'sb'"),
             what="the standby streaming")

    def gap(slot):
        row = pg.health(slot)
        return row["summary"] if "failover_unready" in row["findings"] else None

    def remedy_of(slot):
        return pg.health(slot)["remediation"]

    wait_for(lambda: gap("plain") and "failover = false" in gap("plain"), what="plain's gap")
    assert "ALTER_REPLICATION_SLOT plain (FAILOVER true)" in remedy_of("plain")
    assert "synchronized_standby_slots is empty" in gap("fo")
    assert "synchronized_standby_slots = 'sb'" in remedy_of("fo")
    pg.set_config(synchronized_standby_slots="elsewhere")
    wait_for(lambda: "names elsewhere, which is no physical slot" in (gap("fo") or ""),
             what="a list naming no slot")
    pg.set_config(synchronized_standby_slots="sb")
    wait_for(lambda: gap("fo") is None, what="the ready slot")
    assert "failover = false" in gap("plain"), "still unready: the slot itself"
    assert pg.health("fo")["status"] == "ok" or "inactive" in pg.health("fo")["findings"]
    pg.set_config(cdc_health__expect_failover="off")
    wait_for(lambda: gap("plain") is None, what="expect_failover off")


def test_promotion_keeps_exactly_the_slots_called_ready(make_cluster, pg_config):
    needs_major(pg_config, 17, "slot synchronisation is new in PostgreSQL 17")
    pg = started(make_cluster)
    pg.sql("SELECT pg_create_physical_replication_slot('sb', true)")
    replica = pg.standby("sb", dbname="postgres", settings={"sync_replication_slots": "on"})
    wait_for(lambda: pg.one("SELECT active FROM pg_replication_slots WHERE slot_name = 'sb'"),
             what="the standby streaming")
    pg.sql("SELECT pg_create_logical_replication_slot('plain', 'test_decoding')")
    pg.sql("SELECT pg_create_logical_replication_slot('fo', 'test_decoding', false, false, true)")
    pg.sql("CREATE TABLE feed (x int)")

    def gap(cluster, slot):
        row = cluster.health(slot)
        return row["summary"] if "failover_unready" in row["findings"] else None

    wait_for(lambda: "synchronized_standby_slots is empty" in (gap(pg, "fo") or ""),
             what="fo unready: the standby is not listed")
    pg.set_config(synchronized_standby_slots="sb")
    wait_for(lambda: gap(pg, "fo") is None, what="fo ready on the primary")
    assert "failover = false" in gap(pg, "plain")
    # The consumer moves the slot on; the standby's copy is persisted once it has caught up.
    pg.recvlogical("fo")
    pg.sql("INSERT INTO feed VALUES (1)")

    def synced_copy():
        pg.sql("SELECT pg_log_standby_snapshot()")
        rows = replica.sql("SELECT temporary FROM pg_replication_slots "
                           "WHERE slot_name = 'fo' AND synced")
        return rows and rows[0][0] is False

    wait_for(synced_copy, timeout=90, interval=1, what="a persistent synchronized copy of fo")
    assert gap(replica, "fo") is None, replica.health("fo")
    # The standby's own settings are judged there: with synchronisation off the copy goes stale.
    replica.set_config(sync_replication_slots="off")
    wait_for(lambda: "sync_replication_slots is off" in (gap(replica, "fo") or ""),
             what="the standby's setting named")
    assert "sync_replication_slots = on" in replica.health("fo")["remediation"]
    replica.set_config(sync_replication_slots="on")
    wait_for(lambda: gap(replica, "fo") is None, what="the copy ready again")

    # The primary fails; the standby is promoted. What was called ready is there and streams.
    pg.sql("INSERT INTO feed VALUES (2)")
    wait_for(lambda: replica.one("SELECT count(*) FROM feed") == 2, what="the standby replaying")
    pg.stop_server("immediate")
    replica.promote()
    names = {r[0] for r in replica.sql("SELECT slot_name FROM pg_replication_slots")}
    assert "fo" in names, names
    assert "plain" not in names, f"plain was called unready, yet it survived: {names}"
    replica.recvlogical("fo")
    replica.sql("INSERT INTO feed VALUES (42)")
    out = os.path.join(replica.base, "fo.out")
    wait_for(lambda: os.path.exists(out) and "x[integer]:42" in open(out).read(), timeout=60,
             what="the promoted server's changes streamed from the synchronized slot")


def test_a_standby_slot_that_conflicts_is_lost_with_the_reason(make_cluster, pg_config):
    needs_major(pg_config, 16, "logical decoding on a standby is new in PostgreSQL 16")
    pg = started(make_cluster)
    pg.sql("SELECT pg_create_physical_replication_slot('sb', true)")
    # Without feedback the primary does not know what the standby's slot needs.
    replica = pg.standby("sb", settings={"hot_standby_feedback": "off"})
    wait_for(lambda: pg.one("SELECT active FROM pg_replication_slots WHERE slot_name = 'sb'"),
             what="the standby streaming")
    created = []
    creator = threading.Thread(target=lambda: created.append(replica.sql(
        "SELECT pg_create_logical_replication_slot('on_standby', 'test_decoding')")))
    creator.start()
    deadline = time.monotonic() + 60
    while creator.is_alive() and time.monotonic() < deadline:
        pg.sql("SELECT pg_log_standby_snapshot()")
        creator.join(0.5)
    assert created, "the slot creation on the standby did not finish"
    assert "lost" not in replica.health("on_standby")["findings"]
    # Catalog rows the slot needs are removed on the primary and the removal is replayed.
    pg.sql("CREATE TABLE conflict_test (x int)")
    pg.sql("DROP TABLE conflict_test")
    pg.sql("VACUUM pg_class")
    pg.sql("SELECT pg_log_standby_snapshot()")
    row = wait_for(lambda: (r := replica.health("on_standby")) and "lost" in r["findings"] and r,
                   timeout=60, what="the conflicting slot reported lost")
    reason = "rows_removed"
    assert row["detail"]["invalidation_reason"] == reason, row["detail"]
    assert reason in row["summary"], row["summary"]
    assert "conflicted with recovery" in row["remediation"], row["remediation"]
