"""Settings without preloading: how to change them on every version, and mistyped names."""

import psycopg2
import pytest


def test_a_mistyped_setting_is_reported_once_the_library_is_loaded(make_cluster):
    pg = make_cluster()
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("LOAD 'cdc_health'")
        with pytest.raises(psycopg2.Error) as e:
            cur.execute("SET cdc_health.retained_wal_warnig = '1GB'")
    conn.close()
    assert "cdc_health.retained_wal_warnig" in str(e.value)
    assert e.value.pgcode == "42602" and "reserved prefix" in str(e.value), e.value


def test_alter_system_works_after_load_on_every_version(make_cluster):
    """PostgreSQL before 17 refuses unknown placeholders in ALTER SYSTEM; LOAD first works
    everywhere (README, "Settings")."""
    pg = make_cluster()
    conn = pg.connect()
    with conn.cursor() as cur:
        if pg.version < 17:
            with pytest.raises(psycopg2.Error) as e:
                cur.execute("ALTER SYSTEM SET cdc_health.retained_wal_warning = '16MB'")
            assert "unrecognized configuration parameter" in str(e.value)
        cur.execute("LOAD 'cdc_health'")
        cur.execute("ALTER SYSTEM SET cdc_health.retained_wal_warning = '16MB'")
        cur.execute("SELECT pg_reload_conf()")
    conn.close()
    pg.restart()
    # A session that loaded the library (any cdc_health function loads it) sees the value.
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("LOAD 'cdc_health'")
        cur.execute("SHOW cdc_health.retained_wal_warning")
        assert cur.fetchone()[0] == "16MB"
    conn.close()
