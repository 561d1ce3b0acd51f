"""pytest fixtures: the PostgreSQL version under test, throwaway clusters, an HTTP receiver
and a real Alertmanager."""

import os
import types

import pytest

from alertstack import Alertmanager
from pgcluster import Cluster
from receiver import Receiver

PG_CONFIG = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")


@pytest.fixture(scope="session")
def pg_config():
    return PG_CONFIG


@pytest.fixture
def make_cluster(request):
    """Factory for started clusters; each is closed at the end of the test."""
    clusters = []

    def make(settings=None, name=None, start=True, extension=True, encoding="UTF8"):
        c = Cluster(PG_CONFIG, name=name or request.node.name[:40],
                    settings=settings).init(encoding)
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


def _summary(receiver):
    return "\n".join(repr(r) for r in receiver.requests[-20:]) or "(none)"


@pytest.fixture
def receiver(request):
    """A started Receiver (tests/receiver.py), stopped at the end of the test."""
    r = Receiver().start()
    yield r
    if getattr(request.node, "rep_call_failed", False):
        print(f"--- requests received by {r.url} ---\n{_summary(r)}")
    r.stop()


@pytest.fixture
def alertmanager(request):
    """A real Alertmanager routing every alert, ungrouped, to its own Receiver:
    `.am` (tests/alertstack.py) and `.notifications` (its webhook's requests)."""
    notifications = Receiver().start()
    try:
        am = Alertmanager(notifications.url + "/alertmanager")
        try:
            am.start()
            yield types.SimpleNamespace(am=am, notifications=notifications)
            if getattr(request.node, "rep_call_failed", False):
                print(f"--- Alertmanager log of {am.dir} ---\n{am.log_tail()}")
                print(f"--- its notifications ---\n{_summary(notifications)}")
        finally:
            am.close()
    finally:
        notifications.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        item.rep_call_failed = True
