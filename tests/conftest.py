"""pytest fixtures: the PostgreSQL version under test and throwaway clusters."""

import os

import pytest

from pgcluster import Cluster

PG_CONFIG = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")


@pytest.fixture(scope="session")
def pg_config():
    return PG_CONFIG


@pytest.fixture
def make_cluster(request):
    """Factory for started clusters; each is closed at the end of the test."""
    clusters = []

    def make(settings=None, name=None, start=True, extension=True):
        c = Cluster(PG_CONFIG, name=name or request.node.name[:40], settings=settings).init()
        clusters.append(c)
        if start:
            c.start()
            if extension:
                c.sql("CREATE EXTENSION cdc_health")
        return c

    yield make
    for c in clusters:
        if getattr(request.node, "rep_call_failed", False):
            print(f"--- server log of {c.base} ---\n{c.log_tail()}")
        c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        item.rep_call_failed = True
