"""A throwaway ClickHouse server on loopback (Debian clickhouse-server), for tests and benches.

    with ClickHouse() as ch:
        ch.query("CREATE TABLE t (n UInt64) ENGINE = Memory")
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SERVER = "/usr/sbin/clickhouse-server"
RUN_ROOT = os.environ.get("CDC_HEALTH_RUN", "/var/tmp/cdc_health")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog>
    <console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <mark_cache_size>104857600</mark_cache_size>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <{user}><password>{password}</password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></{user}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


class ClickHouse:
    """Starts its own server as root (TOOLCHAIN.md); `user`/`password` is a second account."""

    def __init__(self, name="ch", user="mirror", password="s3cret-pw"):
        os.makedirs(RUN_ROOT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=RUN_ROOT)
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.user, self.password = user, password
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def start(self):
        for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CONFIG.format(d=self.dir, http=self.http_port, tcp=self.tcp_port))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(USERS.format(user=self.user, password=self.password))
        self.proc = subprocess.Popen(
            [SERVER, f"--config-file={self.dir}/config.xml"], cwd=self.dir,
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log", "stderr"), "w"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited: see {self.dir}/log")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.read().strip() == b"Ok.":
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise RuntimeError("clickhouse-server did not answer /ping within 30 s")

    def query(self, sql, user=None, password=None, timeout=60):
        """Runs `sql` over HTTP; returns the body as text. Raises on an HTTP error."""
        req = urllib.request.Request(self.url + "/", data=sql.encode(), method="POST")
        req.add_header("X-ClickHouse-User", user or "default")
        if password:
            req.add_header("X-ClickHouse-Key", password)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode()

    def pause(self):
        """Freezes the server: connections are accepted by the kernel but never answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()


class PeerDB:
    """Writes a PostgreSQL table into a ClickHouse mirror the way PeerDB does: a
    ReplacingMergeTree with `_peerdb_synced_at`, `_peerdb_is_deleted` and `_peerdb_version`.
    The source needs columns id (bigint), started_at (timestamptz) and note (text)."""

    def __init__(self, pg, ch, source, target, version=0):
        self.pg, self.ch, self.source, self.target, self.version = pg, ch, source, target, version

    def create(self):
        self.ch.query(f"DROP TABLE IF EXISTS {self.target}")
        self.ch.query(f"""CREATE TABLE {self.target} (
            id Int64, started_at DateTime, note String,
            _peerdb_synced_at DateTime, _peerdb_is_deleted UInt8, _peerdb_version Int64
        ) ENGINE = ReplacingMergeTree(_peerdb_version) ORDER BY id""")
        return self

    def sync(self):
        """Copies the source rows the mirror does not have yet."""
        have = self.ch.query(f"SELECT max(id) FROM {self.target} FINAL").strip() or "0"
        rows = self.pg.sql(f"SELECT id, extract(epoch FROM started_at)::bigint, note "
                           f"FROM {self.source} WHERE id > %s ORDER BY id", (int(have),))
        if rows:
            self.version += 1
            values = ", ".join(f"({i}, toDateTime({t}), '{n}', now(), 0, {self.version})"
                               for i, t, n in rows)
            self.ch.query(f"INSERT INTO {self.target} VALUES {values}")
        return len(rows)

    def delete(self, ids):
        """Deletes rows in the mirror only, as PeerDB marks deletions."""
        self.version += 1
        values = ", ".join(f"({i}, now(), 'gone', now(), 1, {self.version})" for i in ids)
        self.ch.query(f"INSERT INTO {self.target} VALUES {values}")
