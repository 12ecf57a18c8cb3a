"""A fake Lambda Runtime API for the benchmarks: the endpoints a function process talks to.

A function process is started with AWS_LAMBDA_RUNTIME_API pointing here. The server notes the moment
of its first `GET /2018-06-01/runtime/invocation/next` (the cold start ends there), hands out events
queued with `deliver`, and collects what the function posts back. HTTP/1.1 with keep-alive, as the
real service speaks it (the Rust runtime's client does not get past a 1.0 server).
"""

import http.server
import json
import queue
import threading
import time
import uuid

NEXT = "/2018-06-01/runtime/invocation/next"


class RuntimeApi:
    def __init__(self):
        self.first_poll_ns = None
        self.polled = threading.Event()
        self.events = queue.Queue()
        self.results = {}
        self.answered = threading.Condition()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != NEXT:
                    return self._reply(404, b"{}")
                if api.first_poll_ns is None:
                    api.first_poll_ns = time.perf_counter_ns()
                    api.polled.set()
                while True:
                    try:
                        request_id, body = api.events.get(timeout=0.5)
                        break
                    except queue.Empty:
                        if getattr(api, "closing", False):
                            return
                deadline = int(time.time() * 1000) + 900_000
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:bench",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                }
                self._reply(200, body, headers)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.strip("/").split("/")
                # /2018-06-01/runtime/invocation/{id}/response|error, or /2018-06-01/runtime/init/error
                if len(parts) >= 5 and parts[2] == "invocation":
                    with api.answered:
                        api.results[parts[3]] = (parts[4], body)
                        api.answered.notify_all()
                elif len(parts) >= 4 and parts[2] == "init":
                    with api.answered:
                        api.results["init"] = ("error", body)
                        api.answered.notify_all()
                self._reply(202, b"{}")

            def _reply(self, status, body, headers=None):
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the process under test was stopped while waiting

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a process under test stopped mid-request: expected, not worth a traceback

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def deliver(self, event, timeout):
        """Queues one event and waits for the function's answer: (kind, parsed body, seconds)."""
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        self.events.put((request_id, json.dumps(event).encode()))
        with self.answered:
            ok = self.answered.wait_for(lambda: request_id in self.results or "init" in self.results, timeout)
        elapsed = time.perf_counter() - started
        if not ok:
            raise TimeoutError(f"no answer to the event within {timeout}s")
        kind, body = self.results.get(request_id) or self.results["init"]
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = body.decode(errors="replace")
        return kind, parsed, elapsed

    def close(self):
        self.closing = True
        self.server.shutdown()
        self.server.server_close()


def peak_rss_kib(pid):
    """VmHWM (peak resident set) and VmRSS of a live process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out.get("VmHWM", 0), out.get("VmRSS", 0)
