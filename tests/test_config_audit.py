"""cdc_health.config_audit() on real clusters: each check tried once, with the server really
in the state the check names (a keyless published table whose UPDATE really fails, slots and
walsenders really in use, pg_wal on a small volume of its own, a standby with a logical slot).
"""

import os
import threading

import psycopg2
import pytest

from pgcluster import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
# A bounded WAL budget, so the checks of an unlimited one (which look at how full the host's
# disk is) stay out of the tests of the others.
BOUNDED = {"max_slot_wal_keep_size": "'256MB'"}


def audit(pg, **kw):
    conn = pg.connect(**kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM cdc_health.config_audit()")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        conn.close()


def rows_of(pg, code):
    return [r for r in audit(pg) if r["check_code"] == code]


def test_a_keyless_table_in_a_publication_is_named_and_its_update_really_fails(make_cluster):
    pg = make_cluster()
    pg.sql("CREATE TABLE keyless (id int, v text)")
    pg.sql("CREATE TABLE nothing_identity (id int PRIMARY KEY, v text)")
    pg.sql("ALTER TABLE nothing_identity REPLICA IDENTITY NOTHING")
    pg.sql("CREATE TABLE keyed (id int PRIMARY KEY, v text)")
    pg.sql("CREATE TABLE full_identity (id int, v text)")
    pg.sql("ALTER TABLE full_identity REPLICA IDENTITY FULL")
    pg.sql("CREATE TABLE by_index (id int NOT NULL, v text)")
    pg.sql("CREATE UNIQUE INDEX by_index_id ON by_index (id)")
    pg.sql("ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_id")
    pg.sql("CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id)")
    pg.sql("CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)")
    for t in ("keyless", "nothing_identity", "keyed", "full_identity", "by_index", "parted"):
        pg.sql(f"INSERT INTO {t} VALUES (1, 'a')")
    assert not rows_of(pg, "replica_identity_missing"), "no publication yet"

    pg.sql("CREATE PUBLICATION everything FOR ALL TABLES")
    # Named with their schema: the audit's statements run with search_path pg_catalog.
    rows = {r["object"]: r for r in rows_of(pg, "replica_identity_missing")}
    assert set(rows) == {"public.keyless", "public.nothing_identity", "public.parted_1"}, rows
    keyless = rows["public.keyless"]
    assert keyless["severity"] == "critical"
    assert "publication everything" in keyless["summary"]
    assert "no primary key" in keyless["summary"]
    assert "NOTHING" in rows["public.nothing_identity"]["summary"]
    assert "REPLICA IDENTITY" in keyless["remediation"]
    # What the row says is what happens: the application's own UPDATE fails.
    with pytest.raises(psycopg2.Error) as failed:
        pg.sql("UPDATE keyless SET v = 'b'")
    assert failed.value.pgcode == "55000", failed.value
    pg.sql("UPDATE keyed SET v = 'b'")
    pg.sql("UPDATE full_identity SET v = 'b'")

    # The index that backed the identity is dropped: the identity is gone with it.
    pg.sql("UPDATE by_index SET v = 'b'")
    pg.sql("DROP INDEX by_index_id")
    rows = {r["object"]: r for r in rows_of(pg, "replica_identity_missing")}
    assert "index that is gone" in rows["public.by_index"]["summary"], rows
    with pytest.raises(psycopg2.Error) as failed:
        pg.sql("UPDATE by_index SET v = 'c'")
    assert failed.value.pgcode == "55000", failed.value

    # A publication of INSERTs only does not make UPDATEs fail, and is not named.
    pg.sql("DROP PUBLICATION everything")
    pg.sql("CREATE PUBLICATION inserts FOR TABLE keyless WITH (publish = 'insert')")
    assert not rows_of(pg, "replica_identity_missing")
    pg.sql("UPDATE keyless SET v = 'c'")


def test_slots_and_walsenders_near_their_limits(make_cluster):
    pg = make_cluster(settings={**BOUNDED, "max_replication_slots": "5", "max_wal_senders": "2",
                                "wal_sender_timeout": "60s"})
    for i in range(3):
        pg.create_logical_slot(f"s{i}")
    assert not audit(pg), audit(pg)
    pg.create_logical_slot("s3")
    (row,) = rows_of(pg, "replication_slots_near_limit")
    assert (row["severity"], row["summary"]) == ("warning", "4 of 5 replication slots in use "
                                                 "(max_replication_slots)")
    pg.create_logical_slot("s4")
    assert rows_of(pg, "replication_slots_near_limit")[0]["severity"] == "critical"
    with pytest.raises(psycopg2.Error) as full:
        pg.create_logical_slot("s5")
    assert full.value.pgcode == "53400"

    pg.recvlogical("s0")
    pg.recvlogical("s1")
    (row,) = rows_of(pg, "wal_senders_near_limit")
    assert row["severity"] == "critical" and row["summary"].startswith("2 of 2 walsenders")


def test_wal_level_and_wal_sender_timeout(make_cluster):
    pg = make_cluster(settings={**BOUNDED, "wal_level": "replica", "wal_sender_timeout": "0"})
    assert [r["check_code"] for r in audit(pg)] == ["wal_sender_timeout_off"]
    pg.sql("CREATE PUBLICATION p FOR ALL TABLES")  # allowed, with a WARNING
    codes = [r["check_code"] for r in audit(pg)]
    assert codes == ["wal_level_not_logical", "wal_sender_timeout_off"], codes
    pg.set_config(wal_sender_timeout="60s")
    wait_for(lambda: pg.one("SHOW wal_sender_timeout") == "1min", what="the reload")
    assert [r["check_code"] for r in audit(pg)] == ["wal_level_not_logical"]


def test_the_wal_budget_against_the_volume_holding_pg_wal(small_volume, make_cluster):
    volume = small_volume(96)
    pg = make_cluster(waldir=os.path.join(volume, "pg_wal"),
                      settings={"max_slot_wal_keep_size": "'1GB'", "wal_sender_timeout": "60s",
                                "max_wal_size": "'64MB'", "min_wal_size": "'32MB'"})
    (row,) = rows_of(pg, "wal_budget_exceeds_volume")
    assert "96 MB" in row["summary"] or "96.0 MB" in row["summary"], row

    pg.set_config(max_slot_wal_keep_size="-1")
    wait_for(lambda: pg.one("SHOW max_slot_wal_keep_size") == "-1", what="the reload")
    assert not rows_of(pg, "wal_budget_unlimited"), "the volume has room"
    # Fill the volume until under a quarter of it is free: a real file on the real volume.
    with open(os.path.join(volume, "ballast"), "wb") as f:
        free = os.statvfs(volume).f_bavail * os.statvfs(volume).f_frsize
        f.write(b"\0" * int(free - 10 * 2**20))
    (row,) = rows_of(pg, "wal_budget_unlimited")
    assert "PANIC" in row["summary"] and row["object"] == "max_slot_wal_keep_size"
    os.unlink(os.path.join(volume, "ballast"))
    assert not rows_of(pg, "wal_budget_unlimited")


def test_an_idle_slot_timeout_shorter_than_a_restart(make_cluster):
    pg = make_cluster(settings={**BOUNDED, "wal_sender_timeout": "60s"})
    if pg.version < 18:
        pytest.skip("idle_replication_slot_timeout is new in PostgreSQL 18")
    assert not audit(pg)
    pg.set_config(idle_replication_slot_timeout="10min")
    wait_for(lambda: pg.one("SHOW idle_replication_slot_timeout") == "10min", what="the reload")
    (row,) = rows_of(pg, "idle_slot_timeout_short")
    assert "10m" in row["summary"] and "before cdc_health's inactive alert" in row["summary"]


def test_hot_standby_feedback_off_on_a_standby_with_a_logical_slot(make_cluster):
    primary = make_cluster(settings={**BOUNDED, "wal_sender_timeout": "60s"})
    if primary.version < 16:
        pytest.skip("logical slots on a standby are new in PostgreSQL 16")
    primary.sql("SELECT pg_create_physical_replication_slot('standby')")
    standby = primary.standby("standby", settings={**BOUNDED, "hot_standby_feedback": "off",
                                                   "wal_sender_timeout": "60s"})
    wait_for(lambda: standby.one("SELECT pg_is_in_recovery()"), what="the standby")
    assert not audit(standby), "no logical slot on the standby yet"
    # Creating a logical slot on a standby waits for a standby snapshot from the primary.
    done = threading.Event()

    def create():
        standby.create_logical_slot("on_standby")
        done.set()

    t = threading.Thread(target=create, daemon=True)
    t.start()
    wait_for(lambda: done.is_set() or primary.one("SELECT pg_log_standby_snapshot() IS NULL"),
             timeout=60, what="the slot on the standby")
    t.join(60)
    (row,) = rows_of(standby, "hot_standby_feedback_off")
    assert row["severity"] == "warning" and "1 logical slot" in row["summary"]


def test_config_audit_is_for_pg_monitor(make_cluster):
    pg = make_cluster(settings=BOUNDED)
    pg.sql("CREATE ROLE nobody LOGIN")
    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    with pytest.raises(psycopg2.Error) as denied:
        audit(pg, user="nobody")
    assert denied.value.pgcode == "42501"
    assert [r["check_code"] for r in audit(pg, user="watcher")] == ["wal_sender_timeout_off"]
