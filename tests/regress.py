"""Runs the pg_regress suite (pg_regress/schedule, sql/ against expected/) on a cluster."""

import os
import shutil
import subprocess

from pgcluster import as_postgres, pg_config_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "pg_regress")


def run_pg_regress(pg, dbname="cdc_health_regress", use_existing=False):
    """Runs the schedule against `pg`; returns (ok, output). With `use_existing` the database
    must exist already (a copy of an upgraded one, say) and is used as it is."""
    pgxs = pg_config_value(pg.pg_config, "--pgxs")
    pg_regress = os.path.join(os.path.dirname(pgxs), "..", "test", "regress", "pg_regress")
    out = os.path.join(pg.base, f"regress-{dbname}")
    os.makedirs(out)
    if os.geteuid() == 0:
        shutil.chown(out, "postgres", "postgres")
    result = subprocess.run(
        as_postgres([pg_regress, f"--bindir={pg.bindir}", "--host=127.0.0.1", f"--port={pg.port}",
                     "--user=postgres", f"--inputdir={SUITE}", f"--outputdir={out}",
                     f"--schedule={os.path.join(SUITE, 'schedule')}", f"--dbname={dbname}",
                     *(["--use-existing"] if use_existing else [])]),
        capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    diffs = os.path.join(out, "regression.diffs")
    if result.returncode != 0 and os.path.exists(diffs):
        # Keep the actual output next to the suite so it can be reviewed and accepted.
        results = os.path.join(out, "results")
        for name in os.listdir(results) if os.path.isdir(results) else []:
            os.makedirs(os.path.join(SUITE, "results"), exist_ok=True)
            shutil.copy(os.path.join(results, name), os.path.join(SUITE, "results", name))
        with open(diffs) as f:
            output += f.read()
    return result.returncode == 0, output
