"""A small model server for the custom-container predictor's end-to-end tests (standard library only).

It speaks the TF Serving REST shape: `GET /v1/models/NAME` is 200 once the model is "loaded" (after
LOAD_SECONDS), `POST /v1/models/NAME:predict` answers each instance's sum and which build answered
(ANSWER, so a rollout or a traffic split can be observed), `GET /healthz` is the liveness endpoint
and fails once FAIL_LIVENESS_AFTER seconds have passed. It listens on $PORT (default 8080), reads the
model directory's `answer.txt` when /mnt/models has one, and drains on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STARTED = time.monotonic()
MODEL_NAME = os.environ.get("MODEL_NAME", "model")
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "0"))
FAIL_LIVENESS_AFTER = float(os.environ.get("FAIL_LIVENESS_AFTER", "0"))
MODEL_FILE = Path(os.environ.get("MODEL_DIR", "/mnt/models")) / "answer.txt"
ANSWER = MODEL_FILE.read_text().strip() if MODEL_FILE.is_file() else os.environ.get("ANSWER", "unset")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise here
        pass

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        uptime = time.monotonic() - STARTED
        if self.path == "/healthz":
            if FAIL_LIVENESS_AFTER and uptime > FAIL_LIVENESS_AFTER:
                self.reply(500, {"error": f"unhealthy after {FAIL_LIVENESS_AFTER:g} s (FAIL_LIVENESS_AFTER)"})
            else:
                self.reply(200, {"status": "ok"})
        elif self.path == f"/v1/models/{MODEL_NAME}":
            state = "AVAILABLE" if uptime >= LOAD_SECONDS else "LOADING"
            self.reply(
                200 if state == "AVAILABLE" else 503, {"model_version_status": [{"version": "1", "state": state}]}
            )
        else:
            self.reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != f"/v1/models/{MODEL_NAME}:predict":
            self.reply(404, {"error": f"no route {self.path}"})
        elif not isinstance(body.get("instances"), list):
            self.reply(400, {"error": 'expected {"instances": [[...], ...]}'})
        else:
            self.reply(200, {"predictions": [sum(row) for row in body["instances"]], "answer": ANSWER})


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"test server: model {MODEL_NAME}, answer {ANSWER!r}, port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
