"""A small HTTP/1.1 server over asyncio streams (keep-alive, Content-Length bodies), enough
for the OpenAI SDK: cheap in CPU next to the client it serves, and able to misbehave on
purpose (close a connection without an answer, or halfway through a body)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}  # fmt: skip
CHUNK = 1 << 20


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    """``body`` is bytes, or an async iterator of byte chunks of ``length`` bytes in all.
    ``drop`` closes the connection instead of answering; ``cut_at`` closes it after that
    many bytes of the body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | AsyncIterator[bytes] = b""
    length: int | None = None
    drop: bool = False
    cut_at: int | None = None


Handler = Callable[[Request], Awaitable[Response]]


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    request_line = await reader.readline()
    if not request_line:
        return None
    method, target, _ = request_line.decode("latin-1").split(" ", 2)
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, value = line.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    return Request(method, url.path, dict(parse_qsl(url.query)), headers, body)


async def _write(writer: asyncio.StreamWriter, response: Response) -> bool:
    """Send the response; False when it was cut (the connection is then closed)."""
    body = response.body
    length = len(body) if isinstance(body, bytes) else response.length
    head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
    fields = {"content-type": "application/json", **response.headers,
              "content-length": str(length)}  # fmt: skip
    head += [f"{name}: {value}" for name, value in fields.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    chunks = _single(body) if isinstance(body, bytes) else body
    sent = 0
    async for chunk in chunks:
        if response.cut_at is not None and sent + len(chunk) >= response.cut_at:
            writer.write(chunk[: response.cut_at - sent])
            await writer.drain()
            return False
        writer.write(chunk)
        sent += len(chunk)
        await writer.drain()
    return True


async def _single(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, max(len(data), 1), CHUNK):
        yield data[start : start + CHUNK]


def connection_handler(
    handle: Handler,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read_request(reader)) is not None:
                response = await handle(request)
                if response.drop or not await _write(writer, response):
                    writer.transport.abort()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the server is shutting down
        finally:
            writer.close()

    return serve


async def start_server(handle: Handler, port: int = 0) -> asyncio.Server:
    return await asyncio.start_server(connection_handler(handle), "127.0.0.1", port, backlog=4096)


def base_url(server: asyncio.Server) -> str:
    """The OpenAI-style base URL of a server started by ``start_server``."""
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def serve_forever(handle: Handler, port: int = 0) -> None:
    """Serve ``handle`` in this process until interrupted; the first line printed names
    the address (``ready <base url>``), which a parent process waits for."""
    server = await start_server(handle, port)
    print(f"ready {base_url(server)}", flush=True)
    async with server:
        await server.serve_forever()


class ServerThread:
    """Serves ``handle`` on 127.0.0.1 from a background thread (tests, benchmarks);
    ``url`` is the OpenAI-style base URL, ending in ``/v1``."""

    def __init__(self, handle: Handler, port: int = 0) -> None:
        self.handle = handle
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.url = ""

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(start_server(self.handle, self.port))
        self.url = base_url(server)
        self.ready.set()
        self.loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the simulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
