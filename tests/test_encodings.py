"""Text from other sessions in databases that are not UTF-8 (LATIN1, SQL_ASCII), and from a
LATIN1 database seen from a UTF8 one: cdc_health() and every worker pass keep working, and
the text is decoded or replaced, never a reason to fail."""

import psycopg2
import pytest

from pgcluster import wait_for

SETTINGS = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.long_transaction_warning": "1s",
    "cdc_health.alert_holddown": "0",
    "max_prepared_transactions": "5",
}


def hold(pg, dbname, client_encoding):
    """A session idle in transaction with an xid whose last statement has a non-ASCII
    literal, and a prepared transaction whose gid is non-ASCII, both sent in
    `client_encoding`."""
    # Prepared first: the older one is named in the remedy.
    prep = pg.connect(dbname, autocommit=True)
    prep.set_client_encoding(client_encoding)
    prep.cursor().execute("BEGIN; SELECT txid_current(); PREPARE TRANSACTION 'préparé'")
    conn = pg.connect(dbname, autocommit=False)
    conn.set_client_encoding(client_encoding)
    cur = conn.cursor()
    cur.execute("SELECT txid_current()")
    cur.execute("SELECT 'déjà vu, ñandú' AS accents")
    return conn, prep


@pytest.mark.parametrize("cluster_encoding,holder_db,client_encoding", [
    ("LATIN1", "postgres", "UTF8"),
    ("SQL_ASCII", "postgres", "LATIN1"),
    ("UTF8", "latin1_db", "LATIN1"),
])
def test_text_in_other_encodings_never_fails_a_call_or_a_pass(
        make_cluster, cluster_encoding, holder_db, client_encoding):
    pg = make_cluster(SETTINGS, encoding=cluster_encoding)
    if holder_db != "postgres":
        pg.sql(f"CREATE DATABASE {holder_db} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
               "TEMPLATE template0")
    wait_for(lambda: pg.one("SELECT passes FROM cdc_health.worker_status()"), what="worker")
    pg.create_logical_slot("pinned")
    pg.recvlogical("pinned")
    holder, prep = hold(pg, holder_db, client_encoding)
    pg.sql("CREATE TABLE churn (x int)")
    failed_before = pg.one("SELECT failed_passes FROM cdc_health.worker_status()")

    def pinned():
        pg.sql("INSERT INTO churn VALUES (1)")
        return "long_transaction" in pg.health("pinned")["findings"]
    wait_for(pinned, what="long_transaction", interval=0.5)
    creations = pg.sql("SELECT * FROM cdc_health.slot_creations()")
    assert creations == [], creations
    alert = wait_for(lambda: pg.one("SELECT summary FROM cdc_health.alerts "
                                    "WHERE finding = 'long_transaction'"), what="the alert")
    passes = pg.one("SELECT passes FROM cdc_health.worker_status()")
    wait_for(lambda: pg.one("SELECT passes FROM cdc_health.worker_status()") > passes + 2,
             what="more passes")
    assert pg.one("SELECT failed_passes FROM cdc_health.worker_status()") == failed_before
    # The prepared transaction is the oldest; its gid is decoded where the database's
    # encoding says how, and replaced where not: never raw bytes in a UTF-8 string.
    # What is written into a database that is not UTF8 is ASCII; a gid that could not be
    # read whole is not written into a command.
    remediation = pg.health("pinned")["remediation"]
    expected = "pr\ufffdpar\ufffd" if cluster_encoding == "UTF8" else "pr?par?"
    assert f'prepared transaction "{expected}"' in remediation, remediation
    assert "COMMIT PREPARED '" not in remediation, remediation
    assert alert
    holder.close()
    prep.cursor().execute("ROLLBACK PREPARED %s", ("préparé",))
    prep.close()
