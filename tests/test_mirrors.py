"""Mirror freshness through foreign data: the cdc_health_clickhouse wrapper against a real
ClickHouse server, PeerDB-shaped mirrors, verification, a postgres_fdw subscriber, and who may
check what."""

import time

import psycopg2
import pytest

from chserver import ClickHouse, PeerDB
from pgcluster import wait_for

MIRROR_WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.mirror_interval": "1s",
    "cdc_health.probe_timeout": "3s",
    "cdc_health.alert_holddown": "0",
}

PEERDB_QUERY = ("SELECT id, started_at, note FROM default.activity FINAL "
                "WHERE _peerdb_is_deleted = 0")


@pytest.fixture(scope="module")
def ch():
    server = ClickHouse(name="ch-test").start()
    yield server
    server.destroy()


def error_of(pg, sql, **kw):
    with pytest.raises(psycopg2.Error) as e:
        pg.sql(sql, **kw)
    return str(e.value)


def clickhouse_server(pg, ch, name="ch", url=None, password=None, **options):
    opts = {"url": url or ch.url, "timeout": "3s", "connect_timeout": "1s", **options}
    text = ", ".join(f"{k} '{v}'" for k, v in opts.items())
    pg.sql(f"CREATE SERVER {name} FOREIGN DATA WRAPPER cdc_health_clickhouse OPTIONS ({text})")
    pg.sql(f"CREATE USER MAPPING FOR PUBLIC SERVER {name} "
           f"OPTIONS (user '{ch.user}', password '{password or ch.password}')")


# -- the wrapper ------------------------------------------------------------------------------

def test_every_supported_type_reads_back(make_cluster, ch):
    ch.query("DROP TABLE IF EXISTS default.types")
    ch.query("""CREATE TABLE default.types (
        i8 Int8, u64 UInt64, i64 Int64, f32 Float32, f64 Float64, s String, fs FixedString(3),
        d Date, dt DateTime, dtz DateTime('Asia/Tokyo'), u UUID, n Nullable(Int32),
        ns Nullable(String), flag UInt8, dec Decimal(10, 3)) ENGINE = Memory""")
    ch.query("""INSERT INTO default.types VALUES
        (-8, 18446744073709551615, -9223372036854775808, 1.5, -inf, 'tab\\there\\nline ü',
         'abc', '2024-02-29', '2024-02-29 23:59:58', '2024-03-01 08:00:00',
         '61f0c404-5cb3-11e7-907b-a6006ad3dba0', NULL, 'x', 1, 12.345)""")
    pg = make_cluster()
    clickhouse_server(pg, ch)
    pg.sql("""CREATE FOREIGN TABLE types (
        i8 smallint, u64 numeric, i64 bigint, f32 real, f64 float8, s text, fs text, d date,
        dt timestamptz, dtz timestamptz, u uuid, n integer, ns text, flag boolean, dec numeric)
        SERVER ch OPTIONS (table 'default.types')""")
    row = pg.sql("SET TimeZone = 'UTC'; SELECT i8, u64::text, i64, f32, f64, s, fs, d::text, "
                 "dt::text, dtz::text, u::text, n, ns, flag, dec::text FROM types")[0]
    assert row == (-8, "18446744073709551615", -9223372036854775808, 1.5, float("-inf"),
                   "tab\there\nline ü", "abc", "2024-02-29", "2024-02-29 23:59:58+00",
                   "2024-02-29 23:00:00+00", "61f0c404-5cb3-11e7-907b-a6006ad3dba0", None, "x",
                   True, "12.345")
    # Only the columns the query needs are asked for.
    plan = "\n".join(r[0] for r in pg.sql("EXPLAIN (VERBOSE) SELECT s FROM types WHERE d > now()"))
    assert "SELECT `s`, `d` FROM `default`.`types`" in plan
    # A value that does not fit is an error naming the column, not garbage.
    pg.sql("CREATE FOREIGN TABLE narrow (u64 integer) SERVER ch OPTIONS (table 'default.types')")
    err = error_of(pg, "SELECT * FROM narrow")
    assert 'column "u64"' in err and "18446744073709551615" in err and "integer" in err
    pg.sql("""CREATE FOREIGN TABLE renamed (missing int) SERVER ch
              OPTIONS (query 'SELECT 1 AS present')""")
    assert 'no column "missing"' in error_of(pg, "SELECT * FROM renamed")
    pg.sql("ALTER FOREIGN TABLE renamed ALTER COLUMN missing OPTIONS (column_name 'present')")
    assert pg.one("SELECT missing FROM renamed") == 1


def test_a_string_with_a_nul_byte_is_refused_naming_the_column(make_cluster, ch):
    """PostgreSQL's text cannot hold NUL; ClickHouse's String can."""
    ch.query("DROP TABLE IF EXISTS default.nul")
    ch.query("CREATE TABLE default.nul (id UInt32, s String, at DateTime) ENGINE = Memory")
    ch.query("INSERT INTO default.nul VALUES (1, 'fine', now()), (2, 'a\\0b', now())")
    pg = make_cluster()
    clickhouse_server(pg, ch)
    pg.sql("CREATE FOREIGN TABLE nul (id integer, s text, at timestamptz) SERVER ch "
           "OPTIONS (table 'default.nul')")
    assert pg.sql("SELECT id FROM nul ORDER BY id") == [(1,), (2,)], "other columns read"
    for query in ("SELECT s FROM nul", "SELECT max(s) FROM nul", "SELECT min(s) FROM nul",
                  "SELECT s FROM nul ORDER BY s LIMIT 1 OFFSET 1"):
        with pytest.raises(psycopg2.Error) as e:
            pg.sql(query)
        assert 'column "s"' in e.value.pgerror and "NUL" in e.value.pgerror, (query, e.value.pgerror)
        assert e.value.pgcode == "22021", (query, e.value.pgcode)
    # verify_mirror's own aggregates (min and max of a String key) refuse it too.
    pg.sql("CREATE TABLE src (id integer, s text, at timestamptz DEFAULT now())")
    pg.sql("SELECT cdc_health.add_mirror('nul', 'src', 'at', 'nul', 'at')")
    with pytest.raises(psycopg2.Error) as e:
        pg.sql("SELECT * FROM cdc_health.verify_mirror('nul', 's')")
    assert e.value.pgcode == "22021" and "NUL" in e.value.pgerror, e.value.pgerror


def test_options_are_validated(make_cluster, ch):
    pg = make_cluster()
    wrap = "FOREIGN DATA WRAPPER cdc_health_clickhouse"
    assert "user mapping" in error_of(
        pg, f"CREATE SERVER s {wrap} OPTIONS (url 'http://u:pw@127.0.0.1:1')")
    assert 'invalid option "host"' in error_of(pg, f"CREATE SERVER s {wrap} OPTIONS (host 'x')")
    assert "duration" in error_of(
        pg, f"CREATE SERVER s {wrap} OPTIONS (url 'http://h:1', timeout 'soon')")
    pg.sql(f"CREATE SERVER s {wrap} OPTIONS (url 'http://127.0.0.1:1')")
    assert 'invalid option "url"' in error_of(
        pg, "CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (url 'x')")
    assert "needs option" in error_of(pg, "CREATE FOREIGN TABLE t (n int) SERVER s")
    assert "exclude" in error_of(
        pg, "CREATE FOREIGN TABLE t (n int) SERVER s OPTIONS (table 't', query 'SELECT 1')")


def test_a_million_rows_are_counted_inside_clickhouse(make_cluster, ch):
    ch.query("DROP TABLE IF EXISTS default.big")
    ch.query("CREATE TABLE default.big (id UInt64, at DateTime) ENGINE = MergeTree ORDER BY id")
    ch.query("INSERT INTO default.big SELECT number, toDateTime(1700000000 + number) "
             "FROM numbers(1000000)")
    pg = make_cluster()
    clickhouse_server(pg, ch, timeout="120s")
    pg.sql("""CREATE FOREIGN TABLE big_count (n bigint, newest timestamptz) SERVER ch
              OPTIONS (query 'SELECT count() AS n, max(at) AS newest FROM default.big')""")
    assert pg.sql("SELECT n, extract(epoch FROM newest)::bigint FROM big_count") == \
        [(1000000, 1700000000 + 999999)]
    # A freshness probe on the plain table aggregates in ClickHouse too: one small row.
    pg.sql("CREATE FOREIGN TABLE big (id bigint, at timestamptz) SERVER ch "
           "OPTIONS (table 'default.big')")
    pg.sql("SELECT cdc_health.add_freshness_check('big', 'big', 'at', '100 years')")
    assert pg.one("SELECT cdc_health.check_mirror('big')") == "ok"
    rows, bytes_ = pg.sql("SELECT target_rows, probe_bytes FROM cdc_health.mirrors()")[0]
    assert rows is None and 0 < bytes_ < 1024
    # The naive way streams every row through the scan, and still counts right.
    assert pg.one("SELECT count(*) FROM big") == 1000000


def test_remote_failures_are_clear_and_bounded(make_cluster, ch):
    pg = make_cluster()
    clickhouse_server(pg, ch)
    pg.sql("CREATE FOREIGN TABLE nope (n int) SERVER ch OPTIONS (table 'default.nope')")
    err = error_of(pg, "SELECT * FROM nope")
    assert "ClickHouse error 60" in err and "default.nope" in err
    clickhouse_server(pg, ch, name="wrong", password="not-the-password")
    pg.sql("CREATE FOREIGN TABLE w (n int) SERVER wrong OPTIONS (query 'SELECT 1 AS n')")
    err = error_of(pg, "SELECT * FROM w")
    assert "ClickHouse error 193" in err and "not-the-password" not in err
    stopped = ClickHouse(name="ch-stopped")  # never started: nothing listens on its port
    clickhouse_server(pg, ch, name="down", url=stopped.url)
    pg.sql("CREATE FOREIGN TABLE d (n int) SERVER down OPTIONS (query 'SELECT 1 AS n')")
    err = error_of(pg, "SELECT * FROM d")
    assert f"could not query ClickHouse at {stopped.url}" in err
    stopped.destroy()
    # 15 blocks of 3 s: cancelled by statement_timeout long before it ends.
    pg.sql("""CREATE FOREIGN TABLE slow (n int) SERVER ch OPTIONS (query
              'SELECT toInt32(sleep(3)) AS n FROM numbers(15) SETTINGS max_block_size = 1')""")
    err = error_of(pg, "SET statement_timeout = '300ms'; SELECT * FROM slow")
    assert "statement timeout" in err
    # ClickHouse is told to stop the query too.
    wait_for(lambda: ch.query("SELECT count() FROM system.processes "
                              "WHERE query LIKE '%sleep(3)%' AND query NOT LIKE '%processes%'"
                              ).strip() == "0", timeout=15, what="the remote query to be killed")


def test_a_frozen_server_times_out_and_the_worker_keeps_watching_slots(make_cluster, ch):
    frozen = ClickHouse(name="ch-frozen").start()
    try:
        pg = make_cluster(settings=MIRROR_WORKER)
        clickhouse_server(pg, ch, name="frozen", url=frozen.url, timeout="2s")
        pg.sql("CREATE FOREIGN TABLE f (at timestamptz) SERVER frozen "
               "OPTIONS (query 'SELECT now() AS at')")
        pg.sql("SELECT cdc_health.add_freshness_check('frozen', 'f', 'at', '1 hour')")
        wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors()") == "ok",
                 what="a first good probe")
        frozen.pause()
        start = time.monotonic()
        err = error_of(pg, "SELECT * FROM f")
        assert "no answer within timeout" in err
        assert time.monotonic() - start < 10
        passes = pg.one("SELECT passes FROM cdc_health.worker_status()")
        wait_for(lambda: pg.one("SELECT findings FROM cdc_health.mirrors()") == ["probe_failed"],
                 timeout=30, what="probe_failed")
        assert pg.one("SELECT finding FROM cdc_health.alerts WHERE subject = 'mirror:frozen' "
                      "AND resolved_at IS NULL") == "probe_failed"
        # Slot passes went on while the probes hung.
        wait_for(lambda: pg.one("SELECT passes FROM cdc_health.worker_status()") >= passes + 3,
                 what="slot passes during the outage")
        frozen.resume()
        wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors()") == "ok",
                 timeout=30, what="recovery")
    finally:
        frozen.destroy()


# -- PeerDB-shaped mirror ----------------------------------------------------------------------

def peerdb_setup(pg, ch, max_lag="3s"):
    pg.sql("CREATE SCHEMA fitness")
    pg.sql("CREATE TABLE fitness.activity (id bigint PRIMARY KEY, started_at timestamptz NOT "
           "NULL DEFAULT now(), note text)")
    pg.sql("INSERT INTO fitness.activity (id, note) SELECT g, 'run' FROM generate_series(1, 50) g")
    clickhouse_server(pg, ch)
    pg.sql(f"""CREATE FOREIGN TABLE mirror_activity (id bigint, started_at timestamptz,
               note text) SERVER ch OPTIONS (query '{PEERDB_QUERY}')""")
    peerdb = PeerDB(pg, ch, "fitness.activity", "default.activity").create()
    peerdb.sync()
    pg.sql(f"""SELECT cdc_health.add_mirror('activity', 'fitness.activity', 'started_at',
               'mirror_activity', 'started_at', max_lag => '{max_lag}', max_row_drift => NULL)""")
    return peerdb


def test_a_stale_peerdb_mirror_raises_and_resolves(make_cluster, ch):
    pg = make_cluster(settings=MIRROR_WORKER)
    peerdb = peerdb_setup(pg, ch)
    listener = pg.listen()
    wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors()") == "ok",
             what="the mirror to be seen in step")
    next_id = 51
    deadline = time.monotonic() + 40
    raised = None
    # The source keeps receiving rows; the CDC writer has stopped.
    while raised is None and time.monotonic() < deadline:
        pg.sql("INSERT INTO fitness.activity (id, note) VALUES (%s, 'ride')", (next_id,))
        next_id += 1
        listener.drain(0.5)
        raised = next((p for p in listener.received
                       if p["event"] == "raised" and p["finding"] == "mirror_stale"), None)
    assert raised, f"no mirror_stale alert; got {listener.received}"
    assert raised["subject"] == "mirror:activity"
    assert "behind" in raised["summary"]
    state = pg.sql("SELECT status, lag > interval '3s', source_rows - target_rows "
                   "FROM cdc_health.mirrors()")[0]
    assert state[1] is True and state[2] > 0
    peerdb.sync()
    listener.wait(event="resolved", finding="mirror_stale", subject="mirror:activity", timeout=30)
    assert pg.one("SELECT status FROM cdc_health.mirrors()") == "ok"


def test_rows_missing_in_the_mirror_and_verification(make_cluster, ch):
    pg = make_cluster()
    peerdb_setup(pg, ch, max_lag="1 hour")
    pg.sql("UPDATE cdc_health.mirror_checks SET max_row_drift = 0")
    assert pg.one("SELECT cdc_health.check_mirror('activity')") == "ok"
    ok = pg.sql("SELECT ok, source_rows, target_rows, source_checksum = target_checksum, "
                "source_min, target_max FROM cdc_health.verify_mirror('activity')")[0]
    assert ok == (True, 50, 50, True, "1", "50")
    PeerDB(pg, ch, "fitness.activity", "default.activity", version=100).delete([7, 8, 9])
    assert pg.one("SELECT cdc_health.check_mirror('activity')") == "warning"
    assert pg.sql("SELECT findings, row_drift FROM cdc_health.mirrors()") == \
        [(["mirror_rows_mismatch"], 3)]
    assert pg.one("SELECT summary FROM cdc_health.alerts WHERE finding = 'mirror_rows_mismatch' "
                  "AND resolved_at IS NULL").find("3 missing") > 0
    bad = pg.sql("SELECT ok, target_rows, source_checksum = target_checksum "
                 "FROM cdc_health.verify_mirror('activity', 'id')")[0]
    assert bad == (False, 47, False)
    err = error_of(pg, "SELECT * FROM cdc_health.verify_mirror('activity', 'id', "
                       "raise_on_mismatch => true)")
    assert "does not match its source" in err
    # The same key set in a different order checks out: the checksum ignores order.
    pg.sql("DELETE FROM fitness.activity WHERE id IN (7, 8, 9)")
    assert pg.one("SELECT ok FROM cdc_health.verify_mirror('activity', 'id')") is True
    assert pg.one("SELECT cdc_health.remove_mirror('activity')") is True
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE resolved_at IS NULL") == 0


# -- a PostgreSQL subscriber through postgres_fdw ----------------------------------------------

def test_a_postgres_fdw_subscriber_and_heartbeat_lag(make_cluster):
    settings = dict(MIRROR_WORKER, **{"cdc_health.heartbeat_interval": "1s"})
    pg = make_cluster(settings=settings)
    sub = make_cluster(name="subscriber", extension=False)
    ddl = ("CREATE TABLE public.orders (id bigint PRIMARY KEY, placed_at timestamptz NOT NULL "
           "DEFAULT now())")
    pg.sql(ddl)
    sub.sql(ddl)
    sub.sql("CREATE SCHEMA cdc_health")
    sub.sql("CREATE TABLE cdc_health.heartbeat (id integer PRIMARY KEY, beat_at timestamptz "
            "NOT NULL, beats bigint NOT NULL)")
    pg.sql("INSERT INTO orders (id) SELECT generate_series(1, 20)")
    pg.sql("CREATE PUBLICATION pipeline FOR TABLE orders, cdc_health.heartbeat")
    sub.sql(f"CREATE SUBSCRIPTION pipeline CONNECTION 'host=127.0.0.1 port={pg.port} "
            f"user=postgres dbname=postgres' PUBLICATION pipeline")
    wait_for(lambda: sub.one("SELECT count(*) FROM orders") == 20, what="the initial copy")
    pg.sql("CREATE EXTENSION postgres_fdw")
    pg.sql(f"CREATE SERVER subscriber FOREIGN DATA WRAPPER postgres_fdw "
           f"OPTIONS (host '127.0.0.1', port '{sub.port}', dbname 'postgres')")
    pg.sql("CREATE USER MAPPING FOR PUBLIC SERVER subscriber OPTIONS (user 'postgres')")
    pg.sql("CREATE SCHEMA replica")
    pg.sql("IMPORT FOREIGN SCHEMA public LIMIT TO (orders) FROM SERVER subscriber INTO replica")
    pg.sql("CREATE FOREIGN TABLE replica.heartbeat (id integer, beat_at timestamptz, beats bigint)"
           " SERVER subscriber OPTIONS (schema_name 'cdc_health', table_name 'heartbeat')")
    pg.sql("""SELECT cdc_health.add_mirror('orders', 'orders', 'placed_at', 'replica.orders',
              'placed_at', max_lag => '1 hour', slot_name => 'pipeline')""")
    pg.sql("""SELECT cdc_health.add_mirror('end_to_end', 'cdc_health.heartbeat', 'beat_at',
              'replica.heartbeat', 'beat_at', max_lag => '4s')""")
    wait_for(lambda: pg.sql("SELECT name, status FROM cdc_health.mirrors() ORDER BY name") ==
             [("end_to_end", "ok"), ("orders", "ok")], what="both checks ok")
    assert pg.one("SELECT kind FROM cdc_health.mirrors() WHERE name = 'end_to_end'") == "heartbeat"
    assert pg.one("SELECT ok FROM cdc_health.verify_mirror('orders', 'id')") is True
    sub.sql("ALTER SUBSCRIPTION pipeline DISABLE")
    pg.sql("INSERT INTO orders (id) SELECT generate_series(21, 25)")
    wait_for(lambda: pg.sql("SELECT findings FROM cdc_health.mirrors() ORDER BY name") ==
             [(["heartbeat_stale"],), (["mirror_rows_mismatch"],)], timeout=30,
             what="heartbeat_stale and mirror_rows_mismatch")
    sub.sql("ALTER SUBSCRIPTION pipeline ENABLE")
    wait_for(lambda: pg.sql("SELECT status FROM cdc_health.mirrors()") == [("ok",), ("ok",)],
             timeout=30, what="both checks ok again")
    sub.sql("DROP SUBSCRIPTION pipeline")


# -- who may check what -----------------------------------------------------------------------

def test_checks_run_with_their_owners_rights_only(make_cluster):
    pg = make_cluster(settings=MIRROR_WORKER)
    pg.sql("CREATE TABLE secret (id bigint, at timestamptz DEFAULT now())")
    pg.sql("CREATE TABLE open_data (id bigint, at timestamptz DEFAULT now())")
    pg.sql("INSERT INTO open_data (id) VALUES (1)")
    pg.sql("CREATE ROLE alice LOGIN")
    pg.sql("GRANT USAGE ON SCHEMA cdc_health TO alice")
    pg.sql("GRANT EXECUTE ON FUNCTION cdc_health.add_freshness_check(text, regclass, text, "
           "interval), cdc_health.add_mirror(text, regclass, text, regclass, text, interval, "
           "text, bigint), cdc_health.remove_mirror(text) TO alice")
    pg.sql("GRANT SELECT ON open_data TO alice")
    # No rights on the source: no check.
    err = error_of(pg, "SELECT cdc_health.add_mirror('x', 'secret', 'at', 'open_data', 'at')",
                   user="alice")
    assert "permission denied" in err and "secret" in err
    # Not readable without the function either.
    assert "permission denied" in error_of(pg, "SELECT * FROM cdc_health.mirror_checks",
                                           user="alice")
    pg.sql("SELECT cdc_health.add_freshness_check('alices', 'open_data', 'at', '1 hour')",
           user="alice")
    assert pg.one("SELECT owner::text FROM cdc_health.mirrors()") == "alice"
    wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors()") == "ok",
             what="alice's check ok")
    # Her right goes away: the worker (a superuser) does not read it for her.
    pg.sql("REVOKE SELECT ON open_data FROM alice")
    wait_for(lambda: pg.one("SELECT findings FROM cdc_health.mirrors()") == ["probe_failed"],
             what="probe_failed after the revoke")
    assert "permission denied" in pg.one("SELECT error FROM cdc_health.mirrors()")
    # Someone else's check is not hers to remove.
    pg.sql("SELECT cdc_health.add_freshness_check('admins', 'secret', 'at', '1 hour')")
    assert "only the owner" in error_of(pg, "SELECT cdc_health.remove_mirror('admins')",
                                        user="alice")


def test_https_is_spoken_and_an_untrusted_certificate_refused(make_cluster, tmp_path):
    """ClickHouse Cloud listens on HTTPS: the wrapper speaks TLS and checks the certificate
    against the public roots, so a self-signed one is refused with a clear error."""
    import socket
    import ssl
    import subprocess
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=127.0.0.1", "-days", "1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    handshakes = []

    def serve():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                handshakes.append("done")
        except (ssl.SSLError, OSError) as e:
            handshakes.append(str(e))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pg = make_cluster()
    pg.sql(f"CREATE SERVER tls FOREIGN DATA WRAPPER cdc_health_clickhouse "
           f"OPTIONS (url 'https://127.0.0.1:{port}', timeout '5s')")
    pg.sql("CREATE USER MAPPING FOR PUBLIC SERVER tls OPTIONS (user 'u', password 'tls-secret')")
    pg.sql("CREATE FOREIGN TABLE t (n int) SERVER tls OPTIONS (query 'SELECT 1 AS n')")
    err = error_of(pg, "SELECT * FROM t")
    thread.join(10)
    listener.close()
    assert f"could not query ClickHouse at https://127.0.0.1:{port}" in err
    assert "certificate" in err.lower() or "issuer" in err.lower(), err
    assert "tls-secret" not in err
    assert handshakes, "the server saw a TLS handshake"


class Recorder:
    """A loopback HTTP server that records each request's path and headers and answers with
    a fixed status, headers and body."""

    def __init__(self, status=200, headers=None, body=b""):
        import http.server
        import threading

        self.requests = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.requests.append((self.path, dict(self.headers)))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_credentials_never_follow_a_redirect_nor_go_through_a_proxy(make_cluster):
    elsewhere = Recorder(200, body=b"1\n")
    redirector = Recorder(302, {"Location": elsewhere.url + "/"}, b"<html>moved: internal</html>")
    proxy = Recorder(200, body=b"1\n")
    try:
        pg = make_cluster(start=False)
        pg.extra_env = {"http_proxy": proxy.url, "HTTP_PROXY": proxy.url, "ALL_PROXY": proxy.url}
        pg.start()
        pg.sql("CREATE EXTENSION cdc_health")
        pg.sql("CREATE SERVER moved FOREIGN DATA WRAPPER cdc_health_clickhouse "
               f"OPTIONS (url '{redirector.url}', timeout '3s')")
        pg.sql("CREATE USER MAPPING FOR PUBLIC SERVER moved "
               "OPTIONS (user 'u', password 'redirect-secret')")
        pg.sql("CREATE FOREIGN TABLE t (n int) SERVER moved OPTIONS (query 'SELECT 1 AS n')")
        err = error_of(pg, "SELECT * FROM t")
        assert "302" in err and "redirect" in err, err
        assert "moved: internal" not in err, "a body that is not ClickHouse's is not echoed"
        assert "redirect-secret" not in err
        assert len(redirector.requests) == 1
        assert elsewhere.requests == [], "the credentials followed the redirect"
        assert proxy.requests == [], "the request went through the environment's proxy"
    finally:
        for r in (elsewhere, redirector, proxy):
            r.close()


def test_clickhouse_targets_get_postgresqls_privilege_checks(make_cluster, ch):
    """The aggregate goes to ClickHouse directly, so the checks PostgreSQL would make on the
    foreign table are made first: a revoked owner gets probe_failed, and a role with one
    readable column cannot read min/max of another through verify_mirror."""
    ch.query("DROP TABLE IF EXISTS default.people")
    ch.query("CREATE TABLE default.people (id UInt64, ssn String, at DateTime) "
             "ENGINE = MergeTree ORDER BY id")
    ch.query("INSERT INTO default.people VALUES (1, '078-05-1120', now())")
    pg = make_cluster(settings=MIRROR_WORKER)
    clickhouse_server(pg, ch)
    pg.sql("CREATE FOREIGN TABLE people (id bigint, ssn text, at timestamptz) SERVER ch "
           "OPTIONS (table 'default.people')")
    pg.sql("CREATE TABLE people_src (id bigint PRIMARY KEY, ssn text, at timestamptz)")
    pg.sql("CREATE ROLE alice LOGIN")
    pg.sql("GRANT USAGE ON SCHEMA cdc_health TO alice")
    pg.sql("GRANT EXECUTE ON FUNCTION cdc_health.add_freshness_check(text, regclass, text, "
           "interval), cdc_health.add_mirror(text, regclass, text, regclass, text, interval, "
           "text, bigint), cdc_health.verify_mirror(text, text, boolean) TO alice")
    pg.sql("GRANT SELECT ON people TO alice")
    pg.sql("GRANT SELECT (id, ssn, at) ON people_src TO alice")
    pg.sql("SELECT cdc_health.add_freshness_check('people', 'people', 'at', '1 hour')",
           user="alice")
    wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors() WHERE name = 'people'")
             == "ok", what="alice's ClickHouse check ok")
    pg.sql("REVOKE SELECT ON people FROM alice")
    wait_for(lambda: pg.one("SELECT findings FROM cdc_health.mirrors() WHERE name = 'people'")
             == ["probe_failed"], what="probe_failed after the revoke")
    assert "permission denied" in pg.one("SELECT error FROM cdc_health.mirrors() "
                                         "WHERE name = 'people'")
    # One column granted: the others stay unreadable through verify_mirror.
    pg.sql("GRANT SELECT (id, at) ON people TO alice")
    pg.sql("SELECT cdc_health.add_mirror('people_m', 'people_src', 'at', 'people', 'at')",
           user="alice")
    conn = pg.connect(user="alice")
    with pytest.raises(psycopg2.Error) as e, conn.cursor() as cur:
        cur.execute("SELECT * FROM cdc_health.verify_mirror('people_m', key_column => 'ssn')")
    conn.close()
    assert e.value.pgcode == "42501", e.value
    assert "ssn" in str(e.value) and "078-05-1120" not in str(e.value)
    assert pg.sql("SELECT ok FROM cdc_health.verify_mirror('people_m', key_column => 'id')",
                  user="alice") is not None


def test_a_mirror_that_missed_a_burst_goes_stale_when_the_source_goes_quiet(make_cluster):
    """Lag is the age of the oldest source change the target does not have: after a burst the
    target missed, it keeps growing while the source is quiet (the gap between the newest
    times would stay at 4 s under a 5 s limit for ever)."""
    pg = make_cluster(settings=MIRROR_WORKER)
    pg.sql("CREATE TABLE src (id int PRIMARY KEY, at timestamptz NOT NULL)")
    pg.sql("CREATE INDEX ON src (at)")
    pg.sql("CREATE TABLE dst (id int PRIMARY KEY, at timestamptz NOT NULL)")
    pg.sql("INSERT INTO src VALUES (0, now() - interval '5 s')")
    pg.sql("INSERT INTO dst SELECT * FROM src")
    # 50 rows the target never gets, spread over the next 4 seconds of the past.
    pg.sql("INSERT INTO src SELECT g, now() - interval '5 s' + g * interval '80 ms' "
           "FROM generate_series(1, 50) g")
    pg.sql("SELECT cdc_health.add_mirror('bursty', 'src', 'at', 'dst', 'at', '5 seconds', "
           "max_row_drift => NULL)")
    listener = pg.listen()
    added = time.monotonic()
    raised, _ = listener.wait(timeout=30, event="raised", subject="mirror:bursty",
                              finding="mirror_stale")
    print(f"mirror_stale {time.monotonic() - added:.1f}s after the check was added")
    assert time.monotonic() - added < 5 + 2 * 1 + 3
    lag = pg.one("SELECT extract(epoch FROM lag) FROM cdc_health.mirrors() WHERE name = 'bursty'")
    assert lag > 5
    listener.close()
