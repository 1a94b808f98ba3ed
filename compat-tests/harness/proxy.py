"""A TCP proxy that cuts connections at random moments, seeded so a failure can be replayed.

Each accepted connection gets a lifetime and a byte budget per direction drawn from the seeded
RNG; when either runs out both sides are closed (a byte budget cuts inside a request or a
response), wherever the request/response exchange happens to be (before a request
reached the broker, after the broker appended but before the client saw the response, ...).
`chaos` can be switched off to let a verification step read through the same address.
Runs its own asyncio loop in a background thread; start() returns the listening port.
"""

from __future__ import annotations

import asyncio
import random
import threading

LIFETIME_MEAN_S = 0.25
LIFETIME_MIN_S = 0.05
BUDGET_MEAN_BYTES = 32 * 1024
BUDGET_PROBABILITY = 0.5  # the other connections only have a lifetime, so big requests get through
CONNECTIONS_MAX = 512
CHUNK_BYTES = 64 * 1024


class ChaosProxy:
    def __init__(self, upstream_host: str, upstream_port: int, seed: int, lifetime_mean_s: float = LIFETIME_MEAN_S):
        self.upstream = (upstream_host, upstream_port)
        self.seed = seed
        self.rng = random.Random(seed)
        self.lifetime_mean_s = lifetime_mean_s
        self.chaos = False
        self.cuts = 0
        self.connections = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._slots = threading.BoundedSemaphore(CONNECTIONS_MAX)

    def set_upstream(self, host: str, port: int) -> None:
        """The broker's port is known only after the proxy's (it must advertise the proxy)."""
        self.upstream = (host, port)

    def start(self) -> int:
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self.port

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self._slots.acquire(blocking=False):
            client_w.close()
            return
        self.connections += 1
        try:
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream)
            except OSError:
                client_w.close()
                return
            lifetime_s = budget_up = budget_down = None
            if self.chaos:
                lifetime_s = max(LIFETIME_MIN_S, self.rng.expovariate(1 / self.lifetime_mean_s))
                if self.rng.random() < BUDGET_PROBABILITY:
                    budget_up = int(self.rng.expovariate(1 / BUDGET_MEAN_BYTES))
                    budget_down = int(self.rng.expovariate(1 / BUDGET_MEAN_BYTES))
            pipes = [asyncio.ensure_future(self._pipe(client_r, up_w, budget_up)),
                     asyncio.ensure_future(self._pipe(up_r, client_w, budget_down))]
            done, pending = await asyncio.wait(pipes, timeout=lifetime_s, return_when=asyncio.FIRST_COMPLETED)
            if not done or any(t.result() for t in done if not t.cancelled() and t.exception() is None):
                self.cuts += 1
            for task in pending:
                task.cancel()
            for w in (client_w, up_w):
                w.transport.abort()  # RST, no graceful flush: the cut lands mid-stream
        finally:
            self._slots.release()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None) -> bool:
        """Copies until EOF (returns False) or until `budget` bytes went through (returns True: cut)."""
        while True:
            try:
                data = await reader.read(CHUNK_BYTES)
            except ConnectionError:
                return False
            if not data:
                return False
            if budget is not None and len(data) >= budget:
                writer.write(data[:budget])
                await writer.drain()
                return True
            if budget is not None:
                budget -= len(data)
            writer.write(data)
            try:
                await writer.drain()
            except ConnectionError:
                return False
