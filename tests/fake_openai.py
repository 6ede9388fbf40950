"""A real HTTP server speaking the OpenAI embeddings API, for tests (http.server in a thread:
real sockets, real HTTP). Answers are scripted per test, then deterministic 8-d vectors."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIM = 8


def fake_vector(text: str) -> list[float]:
    """A deterministic 8-d vector per text."""
    return [(b - 128) / 128 for b in hashlib.sha256(text.encode()).digest()[:DIM]]


@dataclass
class Answer:
    """One scripted answer: a status and a body (JSON-encoded unless bytes), after a delay."""

    status: int
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeOpenAI:
    """What the server saw and what it will answer next (scripted answers, then success)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Answer] = []
        self.lock = threading.Lock()

    def respond(self, request: Request) -> Answer:
        with self.lock:
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
        if not request.path.endswith("/v1/embeddings"):
            return Answer(404, {"error": {"message": f"no route {request.path}"}})
        texts = request.body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(t)}
            for i, t in enumerate(texts)
        ]
        data.reverse()  # clients must order by index, not by position
        return Answer(200, {"object": "list", "data": data, "model": request.body["model"]})


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
        request.body = json.loads(raw) if raw else {}
        answer = self.server.api.respond(request)
        time.sleep(answer.delay)
        body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeOpenAI


@contextmanager
def serve_fake_openai(api: FakeOpenAI) -> Iterator[str]:
    """Run a server answering from *api*; yields its base URL (no path)."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.api = api
    thread = threading.Thread(
        target=httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
