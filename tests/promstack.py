"""A real Prometheus (Debian's `prometheus`) on loopback for the tests and benchmarks, and a
small HTTP client for the metrics endpoint."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from pgcluster import free_port, wait_for

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
CONTRIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "contrib")


class Prometheus:
    """Scrapes `targets` ({job: [host:port, ...]}) every `interval` with `rule_files`, and
    sends firing alerts to `alertmanagers` (host:port) when given."""

    def __init__(self, targets, interval="1s", rule_files=(), bearer_token=None,
                 alertmanagers=()):
        self.dir = tempfile.mkdtemp(prefix="prometheus-", dir="/var/tmp")
        self.port = free_port()
        jobs = []
        for job, addresses in targets.items():
            jobs.append(
                f"  - job_name: {json.dumps(job)}\n"
                f"    scrape_interval: {interval}\n"
                f"    scrape_timeout: {interval}\n"
                + (f"    authorization:\n      credentials: {json.dumps(bearer_token)}\n"
                   if bearer_token and job == "cdc_health" else "")
                + f"    static_configs:\n      - targets: {json.dumps(addresses)}\n")
        rules = "".join(f"  - {json.dumps(os.path.abspath(r))}\n" for r in rule_files)
        config = (f"global:\n  evaluation_interval: {interval}\n"
                  + (f"rule_files:\n{rules}" if rules else "")
                  + (f"alerting:\n  alertmanagers:\n    - static_configs:\n"
                     f"        - targets: {json.dumps(list(alertmanagers))}\n"
                     if alertmanagers else "")
                  + "scrape_configs:\n" + "".join(jobs))
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir}/prometheus.yml",
             f"--storage.tsdb.path={self.dir}/data", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=30, what="Prometheus to be ready")

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Prometheus exited: {open(self.log.name).read()[-2000:]}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                          timeout=1).status == 200
        except OSError:
            return False

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        if answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: {answer}")
        return answer["data"]

    def query(self, expr):
        """An instant query's result: a list of {metric: labels, value: float}."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def targets_up(self):
        return [t for t in self.api("targets")["activeTargets"] if t["health"] == "up"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw(port, request: bytes, timeout=5.0):
    """Sends `request` as it is and returns (status code or None, whole answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = None
    if answer.startswith(b"HTTP/1."):
        status = int(answer.split(b" ", 2)[1])
    return status, answer


def get(port, path="/metrics", token=None, timeout=5.0):
    """(status, body text) of one GET; status None when the connection fails."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def check_metrics(text):
    """promtool's verdict on an exposition: (ok, what it said)."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=30)
    return r.returncode == 0, r.stdout + r.stderr


def timed_get(port, **kw):
    start = time.perf_counter()
    status, body = get(port, **kw)
    return status, body, time.perf_counter() - start
