"""Attacks from roles without rights, tried the way a red team would: each test is the attack,
and passes only when it fails."""

import json
import threading
import time

import psycopg2
import pytest

from pgcluster import wait_for

WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.mirror_interval": "1s",
    "cdc_health.inactive_warning": "0",
}

# The operator a delegate puts first on its search_path: it records who it runs as and tries to
# make mallory superuser (which only works when it runs as a superuser).
HIJACK = """
CREATE SCHEMA delegate;
CREATE TABLE delegate.ran_as (who text);
GRANT INSERT ON delegate.ran_as TO PUBLIC;
CREATE FUNCTION delegate.eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delegate.ran_as VALUES (current_user);
    BEGIN
        ALTER ROLE mallory SUPERUSER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN a OPERATOR(pg_catalog.=) b;
END $$;
CREATE OPERATOR delegate.= (LEFTARG = text, RIGHTARG = text, FUNCTION = delegate.eq);
"""


def mallory(pg, grant_functions=True):
    pg.sql("CREATE ROLE mallory LOGIN")
    pg.sql("GRANT CREATE ON DATABASE postgres TO mallory")
    pg.sql("GRANT CREATE ON SCHEMA public TO mallory")
    if grant_functions:
        pg.sql("GRANT USAGE ON SCHEMA cdc_health TO mallory")
        for f in ("add_freshness_check(text, regclass, text, interval)", "check_mirror(text)",
                  "verify_mirror(text, text, boolean)", "remove_mirror(text)",
                  "add_mirror(text, regclass, text, regclass, text, interval, text, bigint)"):
            pg.sql(f"GRANT EXECUTE ON FUNCTION cdc_health.{f} TO mallory")
    conn = pg.connect(user="mallory")
    with conn.cursor() as cur:
        cur.execute(HIJACK)
    return conn


def is_superuser(pg, role="mallory"):
    return pg.one("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))


def test_a_delegate_cannot_hijack_the_owner_through_its_search_path(make_cluster):
    pg = make_cluster()
    conn = mallory(pg)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.events (id int PRIMARY KEY, at timestamptz)")
        cur.execute("CREATE TABLE public.events_copy (id int PRIMARY KEY, at timestamptz)")
        cur.execute("SET search_path = delegate, pg_catalog")
        cur.execute("SELECT 'live'::text = 'live'::text")  # the attack's operator is in reach
        cur.execute("SELECT cdc_health.add_freshness_check('fresh', 'public.events', 'at', '1h')")
        cur.execute("SELECT cdc_health.add_mirror('mirror', 'public.events', 'at', "
                    "'public.events_copy', 'at')")
        cur.execute("SELECT cdc_health.check_mirror('fresh')")
        cur.execute("SELECT cdc_health.check_mirror('mirror')")
        cur.execute("SELECT ok FROM cdc_health.verify_mirror('mirror')")
        cur.execute("SELECT cdc_health.remove_mirror('fresh')")
    conn.close()
    assert not is_superuser(pg)
    assert pg.one("SELECT count(*) FROM delegate.ran_as WHERE who = 'mallory'") >= 1
    assert pg.one("SELECT count(*) FROM delegate.ran_as WHERE who <> 'mallory'") == 0


def test_history_reads_ignore_the_callers_search_path(make_cluster):
    """A superuser reading history with a search_path a role controls runs none of its
    operators: history() is bound at creation, sparkline() forces its own path."""
    pg = make_cluster(WORKER)
    mallory(pg, grant_functions=False).close()
    pg.sql("SELECT pg_create_physical_replication_slot('watched', true)")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history('watched')"),
             what="a history row")
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("SET search_path = delegate, pg_catalog")
        # Mallory's operator is the one an unqualified text = text would call here.
        cur.execute("SELECT oprnamespace::regnamespace::text FROM pg_catalog.pg_operator "
                    "WHERE oid = '=(text,text)'::regoperator")
        assert cur.fetchone()[0] == "delegate"
        cur.execute("SELECT count(*) FROM cdc_health.history('watched')")
        assert cur.fetchone()[0] >= 1
        cur.execute("SELECT cdc_health.sparkline('watched')")
        assert cur.fetchone()[0]
    conn.close()
    assert not is_superuser(pg)
    assert pg.one("SELECT count(*) FROM delegate.ran_as") == 0


def test_history_is_read_by_pg_monitor_and_written_by_no_one_else(make_cluster):
    """The history tables: no access without pg_monitor; pg_monitor reads, never writes (a
    moved rollup position would make the worker skip or redo periods)."""
    pg = make_cluster(WORKER)
    pg.sql("CREATE ROLE nobody LOGIN")
    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    pg.sql("SELECT pg_create_physical_replication_slot('watched', true)")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history_samples"),
             what="a history row")
    reads = ["SELECT count(*) FROM cdc_health.slot_history",
             "SELECT count(*) FROM cdc_health.history_samples",
             "SELECT count(*) FROM cdc_health.history_slots",
             "SELECT count(*) FROM cdc_health.history_rollups",
             "SELECT count(*) FROM cdc_health.history('watched')",
             "SELECT cdc_health.sparkline('watched')"]
    writes = ["UPDATE cdc_health.history_rollups SET rolled_until = NULL",
              "DELETE FROM cdc_health.history_samples",
              "INSERT INTO cdc_health.history_slots (slot_name, slot_type) VALUES ('x', 'physical')",
              "UPDATE cdc_health.history_slots SET slot_name = 'x'"]
    for role, allowed in (("nobody", []), ("watcher", reads)):
        conn = pg.connect(user=role)
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in reads + writes:
                if statement in allowed:
                    cur.execute(statement)
                    assert cur.fetchone()[0], (role, statement)
                else:
                    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                        cur.execute(statement)
        conn.close()
    assert pg.one("SELECT bool_and(rolled_until IS NOT NULL) FROM cdc_health.history_rollups")
    assert pg.one("SELECT count(*) FROM cdc_health.history_slots WHERE slot_name = 'x'") == 0


def test_a_probed_view_cannot_change_the_workers_session(make_cluster):
    pg = make_cluster(WORKER)
    conn = mallory(pg)
    with conn.cursor() as cur:
        cur.execute("""
            CREATE FUNCTION delegate.hijack() RETURNS timestamptz LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_catalog.set_config('search_path', 'delegate, pg_catalog', false);
                PERFORM pg_catalog.set_config('lock_timeout', '0', false);
                RETURN pg_catalog.now();
            END $$;
            CREATE VIEW public.poisoned AS SELECT delegate.hijack() AS at;
            SELECT cdc_health.add_freshness_check('poisoned', 'public.poisoned', 'at', '1h');
        """)
    conn.close()
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.mirror_checks "
                            "WHERE name = 'poisoned' AND status = 'ok'"), what="probes of the view")
    # The slot worker and the mirror worker go on with several passes after the probes.
    pg.create_logical_slot("after_probe")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts "
                            "WHERE subject = 'slot:after_probe'"), what="a pass after the probes")
    probed_before = pg.one("SELECT checked_at FROM cdc_health.mirror_checks WHERE name = 'poisoned'")
    wait_for(lambda: pg.one("SELECT checked_at > %s FROM cdc_health.mirror_checks "
                            "WHERE name = 'poisoned'", (probed_before,)), what="another probe")
    assert not is_superuser(pg)
    assert pg.one("SELECT count(*) FROM delegate.ran_as WHERE who <> 'mallory'") == 0
    mirror_worker = pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdc_health mirrors'")
    assert mirror_worker is not None


def test_holding_the_old_advisory_key_does_not_switch_monitoring_off(make_cluster):
    pg = make_cluster(WORKER)
    pg.sql("CREATE ROLE mallory LOGIN")
    blocker = pg.connect(user="mallory")
    with blocker.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (0x6364_635f_6865_616c,))
    passes = pg.one("SELECT passes FROM cdc_health.worker_status()")
    pg.create_logical_slot("watched_anyway")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts "
                            "WHERE subject = 'slot:watched_anyway' AND resolved_at IS NULL"),
             what="an alert while mallory holds the old key")
    assert pg.one("SELECT skipped_passes FROM cdc_health.worker_status()") == 0
    assert pg.one("SELECT passes FROM cdc_health.worker_status()") > passes
    blocker.close()


def test_a_pass_held_open_by_check_now_is_counted_as_skipped(make_cluster):
    pg = make_cluster(WORKER)
    holder = pg.connect(autocommit=False)
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM cdc_health.check_now()")
        start = pg.one("SELECT skipped_passes FROM cdc_health.worker_status()")
        wait_for(lambda: pg.one("SELECT skipped_passes FROM cdc_health.worker_status()")
                 >= start + 2, what="skipped passes while check_now()'s transaction is open")
    holder.rollback()
    holder.close()
    skipped = pg.one("SELECT skipped_passes FROM cdc_health.worker_status()")
    passes = pg.one("SELECT passes FROM cdc_health.worker_status()")
    wait_for(lambda: pg.one("SELECT passes FROM cdc_health.worker_status()") >= passes + 2,
             what="passes after the transaction ended")
    assert pg.one("SELECT skipped_passes FROM cdc_health.worker_status()") == skipped


def test_a_listener_without_rights_learns_nothing_pg_stat_activity_hides(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.unblock_after": "1s"})
    pg.sql("CREATE ROLE victim LOGIN")
    pg.sql("CREATE ROLE eve LOGIN")  # no grants at all: LISTEN needs none
    eve = pg.listen()
    eve.conn.close()
    eve.conn = pg.connect(user="eve")
    eve.conn.cursor().execute("LISTEN cdc_health")

    # A blocker whose last statement carries a password, idle in transaction.
    blocker = pg.connect(autocommit=False)
    blocker.cursor().execute("ALTER ROLE victim PASSWORD 'hunter2-secret'")
    assert pg.one("SELECT query FROM pg_stat_activity WHERE pid = %s",
                  (blocker.get_backend_pid(),), user="eve") == "<insufficient privilege>"
    creator = threading.Thread(target=lambda: pg.sql(
        "SELECT pg_create_logical_replication_slot('blocked_slot', 'test_decoding')"), daemon=True)
    creator.start()
    raised, _ = eve.wait(event="raised", subject="slot:blocked_slot", finding="creation_blocked")
    text = json.dumps(raised)
    for secret in ("hunter2", "ALTER ROLE", "127.0.0.1", "idle in transaction", "postgres"):
        assert secret not in text, f"{secret!r} reached a role without rights: {text}"
    assert raised["detail"]["creation"]["blocking_pids"] == [blocker.get_backend_pid()]
    assert "cdc_health.alerts" in raised["summary"]
    # The story is there for pg_monitor, with the statement's command word only: the table
    # is dumped and kept, the password never belongs in it.
    stored = pg.one("SELECT detail::text FROM cdc_health.alerts WHERE id = %s",
                    (raised["alert_id"],))
    assert '"statement": "ALTER"' in stored and "hunter2" not in stored, stored
    blocker.rollback()
    blocker.close()
    creator.join(timeout=30)
    eve.close()


def test_a_probe_error_stays_in_the_alerts_table(make_cluster):
    pg = make_cluster(WORKER)
    pg.sql("CREATE ROLE eve LOGIN")
    eve = pg.listen()
    eve.conn.close()
    eve.conn = pg.connect(user="eve")
    eve.conn.cursor().execute("LISTEN cdc_health")
    pg.sql("""
        CREATE FUNCTION public.failing() RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not reach http://10.9.8.7:8123/internal'; END $$;
        CREATE VIEW public.broken AS SELECT public.failing() AS at;
        SELECT cdc_health.add_freshness_check('internal', 'public.broken', 'at', '1h');
    """)
    raised, _ = eve.wait(event="raised", subject="mirror:internal", finding="probe_failed")
    assert "10.9.8.7" not in json.dumps(raised)
    assert "10.9.8.7" in pg.one("SELECT summary FROM cdc_health.alerts WHERE id = %s",
                                (raised["alert_id"],))
    eve.close()


def test_secrets_stay_out_of_the_log_whatever_is_logged(make_cluster):
    """A refused add_sink() used to log its statement (URL password, routing key) with the
    error; ALTER SYSTEM with the token's name quoted escaped the redaction."""
    pg = make_cluster({"shared_preload_libraries": "'cdc_health'",
                       "log_statement": "'all'", "log_min_duration_statement": "0"})
    secrets = ["pw-in-url-4711", "rk-secret-0815", "tok-quoted-name-2342"]
    # Refused: an option that is not one, with secrets beside it.
    with pytest.raises(psycopg2.Error) as e:
        pg.sql("SELECT cdc_health.add_sink('pd', 'pagerduty', "
               "'http://user:pw-in-url-4711@127.0.0.1:9/', "
               "'{\"routing_key\": \"rk-secret-0815\", \"no_such_option\": 1}')")
    assert "no_such_option" in e.value.pgerror, "the caller still sees why"
    # Refused inside PL/pgSQL: its CONTEXT quotes the call.
    with pytest.raises(psycopg2.Error):
        pg.sql("DO $$ BEGIN PERFORM cdc_health.add_sink('pd3', 'pagerduty', "
               "'http://user:pw-in-url-4711@127.0.0.1:9/', "
               "'{\"routing_key\": \"rk-secret-0815\", \"no_such_option\": 1}'); END $$")
    # Accepted, with every statement logged.
    pg.sql("SELECT cdc_health.add_sink('pd', 'pagerduty', "
           "'http://user:pw-in-url-4711@127.0.0.1:9/', '{\"routing_key\": \"rk-secret-0815\"}')")
    conn = pg.connect()
    conn.cursor().execute("LOAD 'cdc_health'")  # 15 and 16 know the name only once loaded
    conn.cursor().execute("ALTER SYSTEM SET \"cdc_health\".\"metrics_auth_token\" = "
                          "'tok-quoted-name-2342'")
    conn.close()
    pg.sql("SELECT pg_reload_conf()")
    wait_for(lambda: "metrics_auth_token" in pg.log_tail(400), what="the reload logged")
    log = pg.log_tail(100000)
    assert "add_sink" in log and "ALTER SYSTEM" in log, "the statements are still logged"
    for s in secrets:
        assert s not in log, (s, log[-3000:])
