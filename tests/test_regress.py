"""Runs the pg_regress suite (pg_regress/sql vs pg_regress/expected) on a throwaway cluster."""

import os
import shutil
import subprocess

from pgcluster import as_postgres, pg_config_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "pg_regress")


def test_pg_regress(make_cluster, pg_config):
    pg = make_cluster(extension=False)
    pgxs = pg_config_value(pg_config, "--pgxs")
    pg_regress = os.path.join(os.path.dirname(pgxs), "..", "test", "regress", "pg_regress")
    tests = sorted(f[:-4] for f in os.listdir(os.path.join(SUITE, "sql")) if f.endswith(".sql"))
    out = os.path.join(pg.base, "regress")
    os.makedirs(out)
    shutil.chown(out, "postgres", "postgres") if os.geteuid() == 0 else None
    result = subprocess.run(
        as_postgres([pg_regress, f"--bindir={pg.bindir}", "--host=127.0.0.1", f"--port={pg.port}",
                     "--user=postgres", f"--inputdir={SUITE}", f"--outputdir={out}",
                     "--dbname=cdc_health_regress", *tests]),
        capture_output=True, text=True,
    )
    diffs = os.path.join(out, "regression.diffs")
    if result.returncode != 0 and os.path.exists(diffs):
        # Keep the actual output next to the suite so it can be reviewed and accepted.
        for name in tests:
            produced = os.path.join(out, "results", f"{name}.out")
            if os.path.exists(produced):
                os.makedirs(os.path.join(SUITE, "results"), exist_ok=True)
                shutil.copy(produced, os.path.join(SUITE, "results", f"{name}.out"))
        with open(diffs) as f:
            print(f.read())
    assert result.returncode == 0, result.stdout + result.stderr
