"""A latency model in front of moto, for the backup benchmark (scripts/bench/backup.py --scenario latency).

moto answers every request from one Python process, one after another, in a few milliseconds; AWS
answers each service's requests in parallel, each after the service's own latency. This proxy sits
between a tool and moto: it holds each request for the latency of its operation (in its own thread,
so held requests overlap as they do against AWS), then forwards it and relays the answer. What moto
then spends on it comes on top, so the model is, if anything, slower than AWS.

The latencies (milliseconds, per request, by service and kind of operation) are a model, not a
measurement; change them with --latency FILE (JSON of the same shape) to your own figures:

- EC2 and RDS mutating calls (CreateSnapshot, DeleteSnapshot, CopySnapshot, CreateDBSnapshot,
  ModifyDBInstance, ...): 100 ms. The EBS guide works with the same figure for one EBS call
  ("Assuming PutSnapshotBlock latency is 100ms", Amazon EBS User Guide, "Optimize performance for
  EBS direct APIs").
- EC2 and RDS listings (Describe*, one page of up to 500 or 1000 items): 300 ms a page. An assumption:
  a page is much larger than one call's answer.
- DynamoDB (GetItem, PutItem, UpdateItem, BatchWriteItem, Query): 10 ms. DynamoDB's documented
  "single-digit millisecond" latency, plus the network inside a region.
- SNS Publish, SQS, STS, AWS Backup: 20, 20, 50 and 100 ms. Assumptions of the same order.

It also counts the requests it forwards, by operation (GET /__counts), so each tool's figure comes
from the same place.
"""

import argparse
import http.client
import http.server
import json
import re
import socketserver
import threading
import time
import urllib.parse

DEFAULT_LATENCY_MS = {
    "ec2": {"describe": 300, "mutate": 100},
    "rds": {"describe": 300, "mutate": 100},
    "dynamodb": {"describe": 10, "mutate": 10},
    "sns": {"describe": 20, "mutate": 20},
    "sqs": {"describe": 20, "mutate": 20},
    "sts": {"describe": 50, "mutate": 50},
    "backup": {"describe": 100, "mutate": 100},
    "default": {"describe": 50, "mutate": 50},
}
READS = ("Describe", "Get", "List", "Query", "Scan", "BatchGet")
SCOPE = re.compile(r"Credential=[^/]+/[0-9]+/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


def operation(headers, body):
    """(service, operation) of a request: the SigV4 scope names the service; the operation is the
    X-Amz-Target's tail (JSON protocols) or the Action form field (query protocols)."""
    m = SCOPE.search(headers.get("Authorization", ""))
    service = m.group(2) if m else "default"
    target = headers.get("X-Amz-Target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return service, form.get("Action", ["?"])[0]
    except Exception:  # noqa: BLE001
        return service, "?"


class Proxy:
    def __init__(self, upstream, latency=None, port=0):
        self.upstream = urllib.parse.urlparse(upstream)
        self.latency = latency or DEFAULT_LATENCY_MS
        self.counts = {}
        self.lock = threading.Lock()
        self.local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path == "/__counts":
                    return self._reply(200, json.dumps(proxy.snapshot()).encode(), {})
                service, op = operation(self.headers, body)
                kind = "describe" if op.startswith(READS) else "mutate"
                table = proxy.latency.get(service, proxy.latency["default"])
                time.sleep(table.get(kind, 0) / 1000.0)
                if not self.path.startswith("/moto-api"):
                    with proxy.lock:
                        key = f"{service}:{op}"
                        proxy.counts[key] = proxy.counts.get(key, 0) + 1
                status, headers, data = proxy.forward(self.command, self.path, self.headers, body)
                self._reply(status, data, headers)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def _reply(self, status, data, headers):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, method, path, headers, body):
        conn = getattr(self.local, "conn", None)
        for attempt in (1, 2):
            if conn is None:
                conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=3600)
                self.local.conn = conn
            try:
                fwd = {k: v for k, v in headers.items() if k.lower() not in ("connection", "content-length")}
                conn.request(method, path, body=body, headers=fwd)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = None
                self.local.conn = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def total(self):
        return sum(self.snapshot().values())

    def reset_counts(self):
        with self.lock:
            self.counts.clear()

    def close(self):
        self.server.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("upstream", help="moto's endpoint, e.g. http://127.0.0.1:5000")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", help="JSON file: {service: {describe: ms, mutate: ms}}")
    args = ap.parse_args()
    latency = json.load(open(args.latency)) if args.latency else None
    p = Proxy(args.upstream, latency, args.port)
    print(p.endpoint, flush=True)
    p.thread.join()


if __name__ == "__main__":
    main()
