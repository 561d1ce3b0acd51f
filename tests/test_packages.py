"""The packages of scripts/package.sh, installed the way a DBA would: with the build-tree
install removed, the .deb through apt-get into Debian's PostgreSQL 15, the tarball's
install.sh into the other majors; then the extension, its worker and an alert work from the
package alone, and removing the package leaves no file behind."""

import glob
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from pgcluster import pg_config_value, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/cache/cdc_health/target")


def version():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


def installed_files(pg_config):
    """The extension's files in the server's directories."""
    lib = os.path.join(pg_config_value(pg_config, "--pkglibdir"), "cdc_health.so")
    ext = os.path.join(pg_config_value(pg_config, "--sharedir"), "extension")
    return sorted(([lib] if os.path.exists(lib) else []) + glob.glob(os.path.join(ext, "cdc_health*")))


@pytest.fixture
def without_build_install(pg_config):
    """Moves the build-tree install aside for the test and puts it back afterwards."""
    aside = tempfile.mkdtemp(prefix="cdc_health-build-install-")
    moved = []
    for path in installed_files(pg_config):
        dest = os.path.join(aside, str(len(moved)))
        shutil.move(path, dest)
        moved.append((path, dest))
    assert installed_files(pg_config) == []
    yield
    for path in installed_files(pg_config):
        os.remove(path)
    for path, dest in moved:
        shutil.move(dest, path)
    shutil.rmtree(aside, ignore_errors=True)


@pytest.fixture(scope="module")
def packages(pg_config):
    major = pg_config_value(pg_config, "--version").split()[1].split(".")[0]
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "package.sh"), "--debug", major],
                   check=True, stdout=subprocess.DEVNULL)
    out = os.path.join(TARGET, "packages")
    deb = os.path.join(out, f"postgresql-{major}-cdc-health_{version()}_amd64.deb")
    tarball = os.path.join(out, f"cdc_health-{version()}-pg{major}-linux-x86_64.tar.gz")
    assert os.path.exists(deb) and os.path.exists(tarball)
    return {"major": major, "deb": deb, "tarball": tarball}


def works_from_the_package(make_cluster):
    """CREATE EXTENSION, cdc_health(), the worker and one alert, on what was installed."""
    pg = make_cluster({"shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s",
                       "cdc_health.inactive_warning": "0"})
    assert pg.one("SELECT extversion FROM pg_extension WHERE extname = 'cdc_health'") == version()
    listener = pg.listen()
    pg.create_logical_slot("packaged")
    row = pg.health("packaged")
    assert row["status"] == "warning" and row["findings"] == ["inactive"]
    wait_for(lambda: pg.one("SELECT running FROM cdc_health.worker_status()"), what="the worker")
    raised, _ = listener.wait(event="raised", subject="slot:packaged", finding="inactive")
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE id = %s", (raised["alert_id"],)) == 1
    listener.close()
    pg.close()


def test_deb_installs_into_debian_postgresql_and_removes_cleanly(
        packages, pg_config, without_build_install, make_cluster):
    if not pg_config.startswith("/usr/lib/postgresql/"):
        pytest.skip("Debian ships only PostgreSQL 15 here; other majors use the tarball")
    fields = subprocess.run(["dpkg-deb", "--field", packages["deb"], "Package", "Depends"],
                            check=True, capture_output=True, text=True).stdout
    name = f"postgresql-{packages['major']}-cdc-health"
    assert f"Package: {name}" in fields and f"postgresql-{packages['major']}" in fields
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-qq", packages["deb"]],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        listed = subprocess.run(["dpkg", "-L", name], check=True, capture_output=True,
                                text=True).stdout.split()
        files = [p for p in listed if os.path.isfile(p)]
        assert installed_files(pg_config) == sorted(p for p in files if "/doc/" not in p)
        assert any(p.endswith("cdc_health--0.1.0.sql") for p in files)
        works_from_the_package(make_cluster)
    finally:
        subprocess.run(["apt-get", "remove", "-y", "-qq", name], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    assert [p for p in files if os.path.exists(p)] == []
    assert installed_files(pg_config) == []


def test_tarball_installs_with_its_installer_and_uninstalls_cleanly(
        packages, pg_config, without_build_install, make_cluster):
    unpacked = tempfile.mkdtemp(prefix="cdc_health-tarball-")
    try:
        subprocess.run(["tar", "-xzf", packages["tarball"], "-C", unpacked], check=True)
        (tree,) = glob.glob(os.path.join(unpacked, "cdc_health-*"))
        installer = os.path.join(tree, "install.sh")
        wrong = subprocess.run([installer, "/bin/true"], capture_output=True, text=True)
        assert wrong.returncode != 0
        done = subprocess.run([installer, pg_config], check=True, capture_output=True, text=True)
        files = done.stdout.split()
        assert installed_files(pg_config) == sorted(files)
        assert any(p.endswith("cdc_health--0.1.0.sql") for p in files)
        works_from_the_package(make_cluster)
        subprocess.run([installer, "--uninstall", pg_config], check=True, capture_output=True)
        assert installed_files(pg_config) == []
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
