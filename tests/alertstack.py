"""A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback for the tests, routing
every alert, ungrouped, to one webhook.

    with Receiver() as hook, Alertmanager(hook.url + "/am") as am:
        am.post_alerts([{"labels": {"alertname": "X"}}])
        [note] = hook.wait_for_requests(1, path="/am")    # {"status": "firing", "alerts": [...]}
"""

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from pgcluster import free_port, wait_for

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"


class Alertmanager:
    """Its own port, storage and config; no HA gossip (`--cluster.listen-address=`)."""

    def __init__(self, receiver_url, group_wait="1s", group_interval="1s",
                 repeat_interval="1h", resolve_timeout="5m", log_level="info"):
        self.dir = tempfile.mkdtemp(prefix="alertmanager-", dir="/var/tmp")
        self.port = None
        self.log_level = log_level
        self.proc = None
        self.log = None
        # group_by ['...']: every alert is its own group, so its own notification.
        config = (f"global:\n  resolve_timeout: {resolve_timeout}\n"
                  f"route:\n  receiver: webhook\n  group_by: ['...']\n"
                  f"  group_wait: {group_wait}\n  group_interval: {group_interval}\n"
                  f"  repeat_interval: {repeat_interval}\n"
                  f"receivers:\n  - name: webhook\n    webhook_configs:\n"
                  f"      - url: {json.dumps(receiver_url)}\n        send_resolved: true\n")
        self.config = os.path.join(self.dir, "alertmanager.yml")
        with open(self.config, "w") as f:
            f.write(config)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        """Starts the server (again after stop(), on the same port and storage) and waits
        until /-/ready answers 200; returns self."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        for attempt in range(3):
            if self.port is None or attempt:
                self.port = free_port()
            self.log = open(os.path.join(self.dir, "alertmanager.log"), "a")
            self.proc = subprocess.Popen(
                [ALERTMANAGER, f"--config.file={self.config}",
                 f"--storage.path={self.dir}/data",
                 f"--web.listen-address=127.0.0.1:{self.port}", f"--web.external-url={self.url}",
                 "--cluster.listen-address=", f"--log.level={self.log_level}"],
                stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
            try:
                wait_for(self._ready, timeout=30, what="Alertmanager to be ready")
                return self
            except RuntimeError:
                self.log.close()
                self.log = None
                # free_port() is only free when asked: another process may have taken it.
                if "address already in use" not in self.log_tail() or attempt == 2:
                    raise

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Alertmanager exited ({self.proc.returncode}): "
                               f"{self.log_tail()}")
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200
        except OSError:
            return False

    def stop(self):
        """Terminates the server (SIGKILL if it does not exit within 10 s); keeps its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, lines=40):
        try:
            with open(os.path.join(self.dir, "alertmanager.log")) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # -- API v2 ------------------------------------------------------------------------------
    def api(self, path, method="GET", body=None, **params):
        """The parsed answer of /api/v2/`path`; list values of `params` repeat the key."""
        query = urllib.parse.urlencode(params, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/v2/{path}" + (f"?{query}" if query else ""),
                                     data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} /api/v2/{path} {params}: {e.code} "
                                 f"{e.read().decode(errors='replace')}") from None
        return json.loads(text) if text.strip() else None

    def alerts(self, active=None, filter=None, silenced=False, inhibited=False):
        """GET /api/v2/alerts: a list of {labels, annotations, startsAt, endsAt, status: {state},
        fingerprint, receivers, ...}. `filter` is {label: value}, or matcher strings
        ('alertname=~"Cdc.*"'). Alerts that ended are not listed."""
        params = {"silenced": str(silenced).lower(), "inhibited": str(inhibited).lower()}
        if active is not None:
            params["active"] = str(active).lower()
        if isinstance(filter, dict):
            params["filter"] = [f"{k}={json.dumps(str(v))}" for k, v in filter.items()]
        elif isinstance(filter, str):
            params["filter"] = [filter]
        elif filter:
            params["filter"] = list(filter)
        return self.api("alerts", **params)

    def post_alerts(self, alerts):
        """POST /api/v2/alerts: each {labels, annotations?, startsAt?, endsAt?, generatorURL?}
        (RFC 3339 times; an endsAt in the past resolves the alert)."""
        self.api("alerts", method="POST", body=list(alerts))

    def status(self):
        return self.api("status")
