"""The pg_regress suite on a throwaway cluster without preloading."""

from regress import run_pg_regress


def test_pg_regress(make_cluster):
    pg = make_cluster(extension=False)
    ok, output = run_pg_regress(pg)
    assert ok, output
