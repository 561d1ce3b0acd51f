"""The peer cdc_health is measured against: Debian's prometheus-postgres-exporter (0.11)
scraped by Debian's prometheus (2.42), each a child process on a free loopback port.

Both are started and stopped by pid (`stop()`), also on failure.
"""

import calendar
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

from common import RUN_DIR, free_port, stop_process, wait_until

EXPORTER = "/usr/bin/prometheus-postgres-exporter"
PROMETHEUS = "/usr/bin/prometheus"

# The strongest rules the exporter's slot metrics allow, one per fault (see BENCHMARKS.md).
# 0.11 exports, per slot, only `active` and `pg_wal_lsn_diff` = current WAL - restart_lsn;
# per walsender (labelled by application_name, not slot) `pg_wal_lsn_diff` = current WAL -
# replay_lsn, NaN for a consumer that reports no apply position (pg_recvlogical).
RULES = """groups:
- name: slots
  rules:
  - alert: SlotInactive
    expr: pg_replication_slots_active == 0
  - alert: SlotLost
    expr: pg_replication_slots_pg_wal_lsn_diff != pg_replication_slots_pg_wal_lsn_diff
  - alert: ConsumerStuck
    expr: pg_stat_replication_pg_wal_lsn_diff > {stall_bytes}
    for: {stall_for}
"""


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True)
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


class Exporter:
    """postgres_exporter against one cluster, as role `user`."""

    def __init__(self, pg, user="postgres", dbname="postgres"):
        self.port = free_port()
        self.base = tempfile.mkdtemp(prefix="exporter-", dir=RUN_DIR)
        env = dict(os.environ)
        env["DATA_SOURCE_NAME"] = (f"postgresql://{user}@127.0.0.1:{pg.port}/{dbname}"
                                   "?sslmode=disable")
        self.log = open(os.path.join(self.base, "exporter.log"), "w")
        self.proc = subprocess.Popen([EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        wait_until(self.ready, timeout=30, what="postgres_exporter to listen")

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def ready(self):
        try:
            self.scrape()
            return True
        except OSError:
            return False

    def scrape(self):
        with urllib.request.urlopen(f"http://{self.target}/metrics", timeout=30) as r:
            return r.read().decode()

    def stop(self):
        stop_process(self.proc, 10)
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


class Prometheus:
    """prometheus scraping `targets` every `scrape` and evaluating RULES every `evaluate`."""

    def __init__(self, targets, scrape="15s", evaluate="15s", stall_bytes=1 << 20,
                 stall_for="10s"):
        self.port = free_port()
        self.base = tempfile.mkdtemp(prefix="prometheus-", dir=RUN_DIR)
        self.scrape_interval, self.evaluation_interval = scrape, evaluate
        self.rules = RULES.format(stall_bytes=stall_bytes, stall_for=stall_for)
        with open(os.path.join(self.base, "rules.yml"), "w") as f:
            f.write(self.rules)
        with open(os.path.join(self.base, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: {scrape}
  evaluation_interval: {evaluate}
rule_files:
  - {os.path.join(self.base, 'rules.yml')}
scrape_configs:
  - job_name: postgres
    static_configs:
      - targets: {json.dumps(list(targets))}
""")
        self.log = open(os.path.join(self.base, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={os.path.join(self.base, 'prometheus.yml')}",
             f"--storage.tsdb.path={os.path.join(self.base, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        wait_until(self.ready, timeout=60, what="prometheus to be ready")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def ready(self):
        try:
            with urllib.request.urlopen(self.url("/-/ready"), timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def alerts(self):
        return get_json(self.url("/api/v1/alerts"))["data"]["alerts"]

    def last_evaluation(self):
        """Wall-clock time (epoch seconds) the rule group was last evaluated."""
        groups = get_json(self.url("/api/v1/rules"))["data"]["groups"]
        return parse_time(groups[0]["lastEvaluation"]) if groups else None

    def stop(self):
        stop_process(self.proc, 20)
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


def parse_time(text):
    """RFC 3339 time with up to nanoseconds (as Prometheus writes it) as epoch seconds."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    base = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + float(m.group(7) or 0)
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        base -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return base
