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

    def make(settings=None, name=None, start=True, extension=True, encoding="UTF8",
             waldir=None):
        c = Cluster(PG_CONFIG, name=name or request.node.name[:40],
                    settings=settings, waldir=waldir).init(encoding)
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


@pytest.fixture
def small_volume():
    """Factory for small file systems of their own (tmpfs mounts of a given size, owned by
    postgres), where disk space runs out for real; each is unmounted at the end of the test,
    after the clusters on it when the test names this fixture before `make_cluster`
    (fixtures are torn down in the reverse order of their setup)."""
    import shutil
    import subprocess
    import tempfile

    from pgcluster import RUN_DIR

    mounts = []

    def make(megabytes):
        path = tempfile.mkdtemp(prefix="volume-", dir=RUN_DIR)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755",
                        "tmpfs", path], check=True)
        mounts.append(path)
        shutil.chown(path, "postgres", "postgres")
        return path

    yield make
    for path in reversed(mounts):
        subprocess.run(["umount", path], check=False)
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", path], check=False)
        if not os.path.ismount(path):
            os.rmdir(path)
