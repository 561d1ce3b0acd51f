"""A caller's mistake is an error with the SQLSTATE that names it (never XX000), and says what
was wrong."""

import psycopg2
import pytest


def sqlstate(pg, sql, user="postgres"):
    conn = pg.connect(user=user)
    try:
        with pytest.raises(psycopg2.Error) as e, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()
    return e.value.pgcode, str(e.value)


def test_mistakes_have_their_sqlstates(make_cluster):
    pg = make_cluster()
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, at timestamptz)")
    pg.sql("CREATE TABLE nokey (at timestamptz)")
    pg.sql("SELECT cdc_health.add_freshness_check('fresh', 't', 'at', '1h')")
    cases = [
        ("SELECT cdc_health.check_mirror('nope')", "42704", "no mirror check named \"nope\""),
        ("SELECT cdc_health.remove_mirror('nope')", "42704", "nope"),
        ("SELECT cdc_health.add_freshness_check(' ', 't', 'at', '1h')", "22023", "needs a name"),
        ("SELECT cdc_health.add_freshness_check('x', 't', 'when', '1h')", "42703",
         "no column \"when\""),
        ("SELECT cdc_health.add_freshness_check('fresh', 't', 'at', '1h')", "42710",
         "exists already"),
        ("SELECT cdc_health.add_freshness_check('x', 't', 'at', '0')", "22023", "max_lag"),
        ("SELECT cdc_health.add_mirror('x', 't', 'at', 't', 'at', max_row_drift => -1)", "22023",
         "max_row_drift"),
        ("SELECT * FROM cdc_health.verify_mirror('fresh')", "22023", "freshness check"),
        ("SELECT cdc_health.add_mirror('y', 'nokey', 'at', 'nokey', 'at')", None, None),
        ("SELECT * FROM cdc_health.verify_mirror('y')", "22023", "primary key"),
        ("SELECT cdc_health.sparkline('s', width => 0)", "22023", "width"),
        ("SELECT cdc_health.add_freshness_check('x', 'no_such_table', 'at', '1h')", "42P01",
         "no_such_table"),
        ("SELECT cdc_health.add_sink('', 'webhook', 'http://127.0.0.1:9/')", "22023",
         "name must be"),
        ("SELECT cdc_health.add_sink('w', 'carrier-pigeon', 'http://127.0.0.1:9/')", "22023",
         "cdc_health.add_sink(\"w\")"),
        ("SELECT cdc_health.add_sink('w', 'webhook', 'http://127.0.0.1:9/')", None, None),
        ("SELECT cdc_health.add_sink('w', 'webhook', 'http://127.0.0.1:9/')", "42710",
         "exists already"),
        ("SELECT cdc_health.remove_sink('nope')", "42704", "no sink named \"nope\""),
        ("SELECT cdc_health.test_sink('nope')", "42704", "no sink named \"nope\""),
    ]
    for sql, code, words in cases:
        if code is None:
            pg.sql(sql)
            continue
        got, message = sqlstate(pg, sql)
        assert got == code, f"{sql}: {got} {message}"
        assert words in message, f"{sql}: {message}"


def test_reading_what_the_caller_may_not_is_42501(make_cluster):
    pg = make_cluster()
    pg.sql("CREATE TABLE secret (id int, at timestamptz)")
    pg.sql("CREATE ROLE alice LOGIN")
    pg.sql("GRANT USAGE ON SCHEMA cdc_health TO alice")
    pg.sql("GRANT EXECUTE ON FUNCTION cdc_health.add_freshness_check(text, regclass, text, "
           "interval) TO alice")
    code, message = sqlstate(
        pg, "SELECT cdc_health.add_freshness_check('x', 'secret', 'at', '1h')", user="alice")
    assert code == "42501" and "secret" in message
    code, _ = sqlstate(pg, "SELECT * FROM cdc_health()", user="alice")
    assert code == "42501"


def test_what_to_do_is_a_hint_and_what_happened_is_the_detail(make_cluster):
    pg = make_cluster()
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, at timestamptz)")
    pg.sql("SELECT cdc_health.add_freshness_check('fresh', 't', 'at', '1h')")
    pg.sql("SELECT cdc_health.add_sink('w', 'webhook', 'http://127.0.0.1:9/')")
    for sql, hint in [
        ("SELECT cdc_health.add_freshness_check('fresh', 't', 'at', '1h')",
         "cdc_health.remove_mirror"),
        ("SELECT cdc_health.add_sink('w', 'webhook', 'http://127.0.0.1:9/')",
         "cdc_health.remove_sink"),
    ]:
        conn = pg.connect()
        try:
            with pytest.raises(psycopg2.Error) as e, conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()
        assert e.value.pgcode == "42710", sql
        assert hint in (e.value.diag.message_hint or ""), (sql, e.value.diag.message_hint)
        assert e.value.diag.message_detail is None, (sql, e.value.diag.message_detail)
