"""A small OpenAI-compatible server over any backend, for tests and local use.

    python -m autodp.llm.serve conf/llm/smollm2.yaml --port 8000

Serves ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` on 127.0.0.1 and honours
``response_format`` ``json_schema`` through the backend's constrained decoding. Requests that
arrive together are generated as one batch. Logs carry counts and timings, never text.
"""
from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from autodp.llm.base import Backend, Completion, Request, Sampling

log = logging.getLogger(__name__)


class Batcher:
    """Collects concurrent requests for ``wait`` seconds (up to the backend's batch size) and runs
    them together: one generate() call serves many HTTP clients."""

    def __init__(self, backend: Backend, wait: float = 0.05):
        self.backend, self.wait = backend, wait
        self.queue: queue.Queue[tuple[Request, Future] | None] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="llm-batcher").start()

    def close(self) -> None:
        self.queue.put(None)

    def submit(self, req: Request) -> Completion:
        fut: Future = Future()
        self.queue.put((req, fut))
        return fut.result()

    def _loop(self) -> None:
        while (first := self.queue.get()) is not None:
            batch = [first]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.backend.batch_size:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:  # closing: finish this batch, then stop
                    self.queue.put(None)
                    break
                batch.append(item)
            t0 = time.perf_counter()
            try:
                results = self.backend.run([r for r, _ in batch])
            except Exception as e:  # noqa: BLE001 - every waiting client gets the error
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            for (_, fut), c in zip(batch, results):
                fut.set_result(c)
            log.info("served %d requests in %.1f s", len(batch), time.perf_counter() - t0)


def parse_request(body: dict[str, Any], chat: bool) -> Request:
    """An OpenAI request body as a backend request; ValueError for what this server cannot do."""
    if body.get("n", 1) != 1:
        raise ValueError("only n=1 is supported")
    prompt = body.get("messages") if chat else body.get("prompt")
    if not (isinstance(prompt, list) if chat else isinstance(prompt, str)):
        raise ValueError("'messages' must be a list" if chat else "'prompt' must be one string")
    stop = body.get("stop") or ()
    sampling = Sampling(temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)),
                        max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or 256),
                        stop=(stop,) if isinstance(stop, str) else tuple(stop))
    fmt = body.get("response_format") or {}
    schema = None
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"]["schema"]
    elif fmt.get("type") not in (None, "text"):
        raise ValueError(f"response_format {fmt.get('type')!r} is not supported; use json_schema")
    return Request(prompt, sampling, schema, int(body.get("seed") or 0))


def _reply(model: str, completion: Completion, chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": completion.finish_reason, "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": completion.text}
    else:
        choice["text"] = completion.text
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice]}


def make_handler(batcher: Batcher, model: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "autodp"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            routes = {"/v1/chat/completions": True, "/v1/completions": False}
            chat = routes.get(self.path.rstrip("/"))
            if chat is None:
                return self._error(404, f"no route {self.path}")
            try:
                req = parse_request(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))), chat)
            except (ValueError, KeyError, TypeError) as e:
                return self._error(400, str(e))
            try:
                completion = batcher.submit(req)
            except Exception as e:  # noqa: BLE001 - reported to the client, the server goes on
                log.exception("generation failed")
                return self._error(500, f"generation failed: {type(e).__name__}")
            self._send(200, _reply(model, completion, chat))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the default logs every request line; the batcher logs counts instead

    return Handler


@contextmanager
def serve(backend: Backend, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread; yields the base URL (port 0: a free port)."""
    batcher = Batcher(backend)
    server = ThreadingHTTPServer((host, port), make_handler(batcher, backend.model_id))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="llm-server")
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        batcher.close()


def main(argv: list[str] | None = None) -> None:
    from omegaconf import OmegaConf

    from autodp.llm.client import build_client

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path, help="a conf/llm/*.yaml with a local backend (transformers or vllm)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = OmegaConf.load(args.config)
    backend = build_client(cfg.client if "client" in cfg else cfg).backend  # conf/llm nests it; a bare client too
    with serve(backend, args.host, args.port) as url:
        log.info("serving %s at %s", backend.model_id, url)
        threading.Event().wait()


if __name__ == "__main__":
    main()
