"""A fault-injecting HTTP proxy on loopback, between the app and the Stripe-compatible test server (R2).

Each request to `/v1/...` draws a fault with probability `rate`:

- `reset_before`: the connection is reset before anything reaches the server;
- `5xx_before`: a 500/502/503 answer without forwarding;
- `429`: Stripe's rate-limit answer without forwarding;
- `timeout_after`: forwarded and processed by the server, then no answer until the client gives up;
- `5xx_after`: forwarded and processed, then a 500 instead of the server's answer;
- `reset_after`: forwarded and processed, then the connection is reset.

The three `_after` faults are the dangerous ones: the money moved and the app does not know it.
Runs an asyncio loop in a daemon thread; one request per connection (`Connection: close`).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from collections import Counter

FAULTS = ("reset_before", "5xx_before", "429", "timeout_after", "5xx_after", "reset_after")


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        rate: float = 0.3,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
        hold_seconds: float = 3.0,
    ) -> None:
        self.upstream_port = upstream_port
        self.rate = rate
        self.faults = faults
        self.hold_seconds = hold_seconds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: Counter = Counter()
        self.requests = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.enabled = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)

    # --- faults -----------------------------------------------------------------------------------------

    def _choose(self, path: str) -> str:
        with self._lock:
            if not path.startswith("/v1/"):
                return "none"
            self.requests += 1
            fault = "none"
            if self.enabled and self._rng.random() < self.rate:
                fault = self._rng.choice(self.faults)
            self.counts[fault] += 1
            return fault

    @property
    def faulted(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind != "none")

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close sends RST, the client sees "connection reset by peer".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    @staticmethod
    def _answer(status: int, body: dict, extra: str = "") -> bytes:
        payload = json.dumps(body).encode()
        reason = {
            429: "Too Many Requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }[status]
        return (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: close\r\n{extra}\r\n"
        ).encode() + payload

    async def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()  # the server closes after its answer
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        try:
            body = await reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        path = head.split(b" ", 2)[1].decode("latin-1")
        fault = self._choose(path)
        try:
            if fault == "reset_before":
                self._reset(writer)
                return
            if fault == "5xx_before":
                status = self._rng.choice((500, 502, 503))
                writer.write(self._answer(status, {"error": {"type": "api_error", "message": "Injected fault."}}))
            elif fault == "429":
                writer.write(
                    self._answer(
                        429,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "code": "rate_limit",
                                "message": "Too many requests (injected).",
                            }
                        },
                    )
                )
            else:
                answer = await self._forward(head, body)
                if fault == "timeout_after":
                    try:  # say nothing until the client hangs up or the hold ends
                        await asyncio.wait_for(reader.read(), timeout=self.hold_seconds)
                    except TimeoutError:
                        pass
                    writer.close()
                    return
                if fault == "reset_after":
                    self._reset(writer)
                    return
                if fault == "5xx_after":
                    answer = self._answer(500, {"error": {"type": "api_error", "message": "Injected fault."}})
                writer.write(answer)
            await writer.drain()
            writer.close()
        except ConnectionError:
            writer.close()
