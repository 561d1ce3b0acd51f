"""A local HTTP receiver for the tests: records every request and answers as told.

    with Receiver() as r:
        ...                                   # something POSTs to r.url + "/hook"
        [req] = r.wait_for_requests(1, path="/hook")
        assert req.json["status"] == "firing"

Modes, switchable at any time: `respond()` (the default: 200 with `{}`), `hang()` (read the
request, never answer until `stop()`), `respond_sequence([503, 503, 200])` (the next requests
get these, then the mode), and the `on_request` hook (called before answering; raising or
returning "drop" closes the connection unanswered). `stop()` closes the listening socket, so
clients get "connection refused"; `start()` again binds the same port.
"""

import collections
import errno
import http.server
import json
import socket
import threading
import time


class Request:
    """One request as received: `headers` is case-insensitive (an email.message.Message)."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None
        self.at = time.monotonic()
        # What it got: a status code, "hung", "dropped" or None while undecided.
        self.answer = None
        self.hook_error = None

    def __repr__(self):
        body = self.body[:200] + (b"..." if len(self.body) > 200 else b"")
        return f"<{self.method} {self.path} -> {self.answer} {body!r}>"


def _hang_up(conn):
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-request is not news; nothing to stderr


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive connection outlives an
    # answer and stop() has nothing to wait for.
    protocol_version = "HTTP/1.0"
    timeout = 30

    def log_message(self, format, *args):
        pass

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def setup(self):
        super().setup()
        self.server.receiver._track(self.server, self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.server, self.connection, False)

    def _handle(self):
        receiver = self.server.receiver
        req = Request(self.command, self.path, self.headers, self._read_body())
        receiver._record(req)
        receiver._answer(self, req)

    do_GET = do_POST = do_PUT = _handle


class Receiver:
    """A threaded HTTP server on 127.0.0.1 (`port` 0: a free one, kept across restarts)."""

    def __init__(self, port=0):
        self.port = port
        self.on_request = None
        self._lock = threading.Condition()
        self._requests = []
        self._connections = set()
        self._sequence = collections.deque()
        self._hang = False
        self._status, self._body, self._headers = 200, b"{}", {"Content-Type": "application/json"}
        self._server = None
        self._thread = None
        self._released = threading.Event()

    @property
    def url(self):
        if not self.port:
            raise RuntimeError("the receiver was never started: it has no port yet")
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout=10.0):
        """Binds (again, the same port after a stop) and serves; returns self."""
        if self._server is not None:
            return self
        deadline = time.monotonic() + timeout
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError as e:
                # The port of a stopped receiver can be taken for a while (an outgoing
                # connection's ephemeral port); it comes back.
                if e.errno != errno.EADDRINUSE or not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server.receiver = self
        server.stopping = False
        self.port = server.server_address[1]
        self._released = threading.Event()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"receiver-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Closes the listening socket and every open connection (hung ones unanswered)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self._released.set()
        server.shutdown()
        server.socket.close()
        with self._lock:
            server.stopping = True
            connections = list(self._connections)
        for conn in connections:
            _hang_up(conn)
        server.server_close()  # joins the handler threads
        self._thread.join()
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- modes -------------------------------------------------------------------------------
    def respond(self, status=200, body=b"{}", headers=None):
        """Answers every request with `status` and `body` (str or bytes); ends hang()."""
        if isinstance(body, str):
            body = body.encode()
        if headers is None:
            headers = {"Content-Type": "application/json"} if body[:1] in (b"{", b"[") else {}
        with self._lock:
            self._hang = False
            self._status, self._body, self._headers = status, body, dict(headers)

    def hang(self):
        """Reads each request and never answers it: the connection is held until stop()."""
        with self._lock:
            self._hang = True

    def respond_sequence(self, statuses):
        """The next requests get these statuses (or (status, body) pairs) in order, before
        the mode applies again."""
        with self._lock:
            self._sequence.extend(statuses)

    # -- what was received -------------------------------------------------------------------
    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    def matching(self, path=None, predicate=None):
        with self._lock:
            requests = list(self._requests)
        return [r for r in requests
                if (path is None or r.path == path) and (predicate is None or predicate(r))]

    def wait_for_requests(self, n=1, timeout=30.0, path=None, predicate=None):
        """Waits until `n` requests match (`path` equal, `predicate(req)` true); returns all
        those that match."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self._requests
                         if (path is None or r.path == path)
                         and (predicate is None or predicate(r))]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n  ".join(repr(r) for r in self._requests[-20:]) or "(none)"
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {n} request(s)"
                        f"{f' to {path}' if path else ''}"
                        f"{' matching the predicate' if predicate else ''} on {self.url}: "
                        f"{len(found)} matched, {len(self._requests)} received; last:\n  {seen}")
                self._lock.wait(min(left, 0.5))

    # -- handler side ------------------------------------------------------------------------
    def _track(self, server, conn, add):
        with self._lock:
            if not add:
                self._connections.discard(conn)
            elif server.stopping:  # accepted just as stop() hung up the others
                _hang_up(conn)
            else:
                self._connections.add(conn)

    def _record(self, req):
        with self._lock:
            self._requests.append(req)
            self._lock.notify_all()

    def _answer(self, handler, req):
        hook = self.on_request
        if hook is not None:
            try:
                verdict = hook(req)
            except Exception as e:  # the hook's way of saying "drop"
                req.hook_error, verdict = e, "drop"
            if verdict == "drop":
                req.answer = "dropped"
                handler.close_connection = True
                return
        with self._lock:
            step = self._sequence.popleft() if self._sequence else None
            hang = self._hang and step is None
            status, body, headers = self._status, self._body, self._headers
            released = self._released
        if step is not None:
            status, body, headers = (step, b"{}", {"Content-Type": "application/json"}) \
                if isinstance(step, int) else (step[0], step[1], {})
            if isinstance(body, str):
                body = body.encode()
        if hang:
            req.answer = "hung"
            released.wait()
            handler.close_connection = True
            return
        req.answer = status
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass
