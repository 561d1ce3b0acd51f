"""In-place upgrades: every released version (sql/RELEASES) is built from its commit, created
with real state by its own library and worker, then the current build is installed, the server
restarted and `ALTER EXTENSION cdc_health UPDATE` run. The result must be the same catalog as
a fresh install, with every row kept and the worker monitoring again."""

import difflib
import os
import re
import subprocess

import pytest

from pgcluster import wait_for
from regress import run_pg_regress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def current_version():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


def released():
    """(version, majors it was released for) of every release."""
    with open(os.path.join(ROOT, "sql", "RELEASES")) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return [(r[0], {int(m) for m in r[3].split(",")}) for r in rows]


def build_release(version, major):
    """The directory with lib/ and extension/ of `version` built for `major` (cached)."""
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "build-release.sh"), version,
                          str(major)], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def script_blocks(path):
    """A pgrx install script as the sorted list of its connected-object blocks."""
    with open(path) as f:
        return sorted(f.read().split("/* <begin connected objects> */"))


def worker_pid(pg, dbname="postgres"):
    return pg.one("SELECT pid FROM cdc_health.worker_status() WHERE running", dbname=dbname)


def mapped_libraries(pid):
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if line.rstrip().endswith("cdc_health.so")}


def catalog_dump(pg, dbname):
    """The extension's objects as pg_dump sees them, without what differs by construction
    (OIDs chosen by the server, the dump's own header)."""
    dump = subprocess.run(
        [pg.bin("pg_dump"), "--schema-only", "--binary-upgrade", "-h", "127.0.0.1",
         "-p", str(pg.port), "-U", "postgres", dbname],
        check=True, stdout=subprocess.PIPE, text=True, env=pg.server_env()).stdout
    keep = []
    for line in dump.splitlines():
        if re.search(r"binary_upgrade_set_next_|binary_upgrade_set_record_init_privs|"
                     r"binary_upgrade_create_empty_extension|^-- Dumped (from|by)|"
                     r"^\\(un)?restrict |pg_catalog\.setval\(", line):
            continue
        line = re.sub(r"relfrozenxid = '\d+', relminmxid = '\d+'", "relfrozenxid = X, relminmxid = X", line)
        keep.append(re.sub(r"oid = '\d+'", "oid = OID", line))
    return keep


def extension_row(pg, dbname):
    # The configuration tables as a set: their order in extconfig is the order they were
    # marked in, which means nothing to pg_dump.
    return pg.sql("SELECT extversion, extowner::regrole::text, extnamespace::regnamespace::text,"
                  " extrelocatable, (SELECT array_agg(c::regclass::text || ' ' || w ORDER BY c::regclass::text)"
                  " FROM unnest(extconfig, extcondition) AS u(c, w)) "
                  "FROM pg_extension WHERE extname = 'cdc_health'", dbname=dbname)


# The table the mirror check watches (created in the fresh database too, to compare dumps).
ORDERS = "CREATE TABLE orders (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"

UPGRADE_SETTINGS = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.mirror_interval": "1s",
    "cdc_health.inactive_warning": "0",
    "cdc_health.alert_holddown": "0",
}


@pytest.mark.parametrize("old,majors", released(), ids=[r[0] for r in released()])
def test_upgrade_from_a_release_keeps_state_and_matches_a_fresh_install(make_cluster, old,
                                                                       majors):
    new = current_version()
    probe = make_cluster(extension=False, start=False)
    if probe.version not in majors:
        pytest.skip(f"{old} was released for PostgreSQL {sorted(majors)}, not {probe.version}")
    old_build = build_release(old, probe.version)

    # The frozen install script is the one that release generates for this major: the same
    # statements (pgrx orders independent blocks differently from build to build).
    frozen = script_blocks(os.path.join(ROOT, "sql", f"cdc_health--{old}.sql"))
    generated = script_blocks(os.path.join(old_build, "extension", f"cdc_health--{old}.sql"))
    assert frozen == generated, f"sql/cdc_health--{old}.sql is not what {old} generates"

    # The old release's library, found first on dynamic_library_path; its install script is
    # the frozen copy installed beside the current build.
    pg = make_cluster({**UPGRADE_SETTINGS,
                       "dynamic_library_path": f"'{old_build}/lib:$libdir'"}, extension=False)
    pg.sql(f"CREATE EXTENSION cdc_health VERSION '{old}'")
    wait_for(lambda: worker_pid(pg), what="the old worker")
    assert any(p.startswith(old_build) for p in mapped_libraries(worker_pid(pg))), \
        "the worker does not run the old release's library"

    # Real state: an open alert, a resolved one, history, a mirror check, a changed setting.
    pg.create_logical_slot("upgrade_idle")
    pg.create_logical_slot("upgrade_gone")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts WHERE finding = 'inactive'"
                            " AND resolved_at IS NULL") == 2, what="two inactive alerts")
    pg.sql("SELECT pg_drop_replication_slot('upgrade_gone')")
    wait_for(lambda: pg.one("SELECT resolved_at IS NOT NULL FROM cdc_health.alerts "
                            "WHERE subject = 'slot:upgrade_gone'"), what="a resolved alert")
    pg.sql(ORDERS)
    pg.sql("INSERT INTO orders SELECT g FROM generate_series(1, 10) g")
    pg.sql("SELECT cdc_health.add_freshness_check('orders_fresh', 'orders', 'at', '1 hour')")
    wait_for(lambda: pg.one("SELECT status FROM cdc_health.mirrors() WHERE name = 'orders_fresh'")
             == "ok", what="the mirror check's first probe")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.slot_history") > 0, what="history")
    pg.sql("ALTER SYSTEM SET cdc_health.retained_wal_warning = '16MB'")
    pg.sql("SELECT pg_reload_conf()")

    alerts_before = pg.sql("SELECT id, subject, finding, raised_at, resolved_at "
                           "FROM cdc_health.alerts ORDER BY id")
    history_before = pg.sql("SELECT sampled_at, slot_name, retained_wal_bytes "
                            "FROM cdc_health.slot_history ORDER BY 1, 2")
    checks_before = pg.sql("SELECT name, kind, target::text, owner::text, max_lag "
                           "FROM cdc_health.mirror_checks ORDER BY name")

    # The upgrade as README says: new files (here: the current build, already installed),
    # restart, then ALTER EXTENSION ... UPDATE.
    pg.stop_server()
    with open(os.path.join(pg.datadir, "postgresql.conf"), "a") as f:
        f.write("dynamic_library_path = '$libdir'\n")
    pg.start()
    wait_for(lambda: worker_pid(pg), what="the new worker")
    assert not any(p.startswith(old_build) for p in mapped_libraries(worker_pid(pg)))

    # Before the update the old objects run on the new library: every C symbol they name
    # must still be there (CREATE FUNCTION checks it).
    pg.sql("CREATE DATABASE old_objects")
    pg.sql(f"CREATE EXTENSION cdc_health VERSION '{old}'", dbname="old_objects")
    for call in ("cdc_health()", "cdc_health.worker_status()", "cdc_health.slot_creations()",
                 "cdc_health.mirrors()"):
        # Each returns the columns its old definition declares, from the new library.
        rows = pg.sql(f"SELECT * FROM {call}", dbname="old_objects")
        assert rows is not None, call
    status = pg.sql("SELECT running, note FROM cdc_health.worker_status()", dbname="old_objects")
    assert status[0][0] is True and "ALTER EXTENSION cdc_health UPDATE" in status[0][1]

    pg.sql("ALTER EXTENSION cdc_health UPDATE")
    assert pg.one("SELECT extversion FROM pg_extension WHERE extname = 'cdc_health'") == new

    # The same catalog as a fresh install of the current version.
    pg.sql("CREATE DATABASE fresh")
    pg.sql("CREATE EXTENSION cdc_health", dbname="fresh")
    pg.sql(ORDERS, dbname="fresh")
    assert extension_row(pg, "postgres") == extension_row(pg, "fresh")
    upgraded, fresh = catalog_dump(pg, "postgres"), catalog_dump(pg, "fresh")
    diff = list(difflib.unified_diff(fresh, upgraded, "fresh install", "upgraded", lineterm=""))
    assert not diff, "upgrade differs from a fresh install:\n" + "\n".join(diff)

    # Every row is still there.
    kept = {a[0]: a for a in pg.sql("SELECT id, subject, finding, raised_at, resolved_at "
                                      "FROM cdc_health.alerts")}
    for a in alerts_before:
        assert a[0] in kept and kept[a[0]][:4] == a[:4], f"alert {a} lost or changed"
        if a[4] is not None:
            assert kept[a[0]][4] == a[4], f"resolved alert {a} changed"
    history_after = pg.sql("SELECT sampled_at, slot_name, retained_wal_bytes "
                           "FROM cdc_health.slot_history ORDER BY 1, 2")
    assert set(history_before) <= set(history_after)
    assert pg.sql("SELECT name, kind, target::text, owner::text, max_lag "
                  "FROM cdc_health.mirror_checks ORDER BY name") == checks_before
    assert pg.one("SHOW cdc_health.retained_wal_warning") == "16MB"

    # The worker monitors and alerts again, on the upgraded objects.
    listener = pg.listen()
    pg.create_logical_slot("upgrade_after")
    raised, _ = listener.wait(event="raised", subject="slot:upgrade_after", finding="inactive")
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE id = %s", (raised["alert_id"],))
    wait_for(lambda: pg.one("SELECT checked_at > now() - interval '5 seconds' "
                            "FROM cdc_health.mirror_checks WHERE name = 'orders_fresh'"),
             what="the mirror worker to probe the kept check")
    listener.close()

    # pg_regress passes on a copy of the upgraded database (no worker, no slots: the suite
    # expects a server without preloading).
    for slot in ("upgrade_idle", "upgrade_after"):
        pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
    pg.sql("ALTER SYSTEM RESET ALL")
    pg.stop_server()
    conf = os.path.join(pg.datadir, "postgresql.conf")
    with open(conf) as f:
        lines = [line for line in f if not line.startswith("cdc_health.")]
    with open(conf, "w") as f:
        f.writelines(lines + ["shared_preload_libraries = ''\n"])
    pg.start()
    pg.sql("CREATE DATABASE cdc_health_regress TEMPLATE postgres")
    ok, output = run_pg_regress(pg, "cdc_health_regress", use_existing=True)
    assert ok, output

