"""A small prediction microservice for the benchmark: the same pickled models, behind HTTP on loopback.

    python -m pgmlkit.bench_service NAME=model.pkl [NAME=model.pkl ...]

Prints the port it listens on (127.0.0.1 only) as its first line of output, then serves
POST /predict/<NAME> with a JSON body {"rows": [[age, income, credit_score], ...]} and answers
{"predictions": [...]}. HTTP/1.1 keep-alive and TCP_NODELAY, as a real service would run, so the
benchmark measures the protocol and the model, not Nagle's algorithm. Standard library + the model only.
"""
from __future__ import annotations

import json
import pickle
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MODELS: dict[str, object] = {}


class PredictHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive: one TCP connection for many requests
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
        name = self.path.rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        model = MODELS.get(name)
        if model is None:
            return self._answer(404, {"error": f"no model {name!r}; loaded: {sorted(MODELS)}"})
        try:
            rows = np.asarray(json.loads(body)["rows"], dtype=np.float64)
            predictions = model.predict(rows).tolist()
        except (ValueError, KeyError, TypeError) as error:
            return self._answer(400, {"error": f"{type(error).__name__}: {error}"})
        self._answer(200, {"predictions": predictions})

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:   # one line per request would dominate the measurement
        pass


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for spec in argv:
        name, _, path = spec.partition("=")
        with open(path, "rb") as file:
            MODELS[name] = pickle.load(file)   # the benchmark wrote these bytes from its own registry
    server = ThreadingHTTPServer(("127.0.0.1", 0), PredictHandler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
