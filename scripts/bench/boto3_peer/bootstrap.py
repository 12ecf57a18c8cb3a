"""A minimal Python Lambda runtime loop (what the managed runtime does): import the handler module,
which runs its module-level setup, then poll the Runtime API for events and answer each one."""

import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import handler  # noqa: E402  (the import is the cold start being measured)

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"

while True:
    with urllib.request.urlopen(f"{API}/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read() or b"null")
    body = json.dumps(handler.handler(event, None)).encode()
    urllib.request.urlopen(urllib.request.Request(f"{API}/{request_id}/response", data=body, method="POST")).read()
