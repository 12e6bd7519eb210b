"""A real TLS endpoint for tests: managed Redis services speak TLS (``rediss://``), so tests put a
TLS terminator, with a certificate from a CA of their own, in front of the tests' plain Redis."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from redisvl_llmrouter.embedded import _free_port


def certificates(d: Path) -> dict[str, str]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost, made in ``d`` (Debian's openssl)."""
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca",
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf",
    ):
        subprocess.run(["openssl", *command.split()], cwd=d, check=True, capture_output=True)
    return {name: str(d / name) for name in ("ca.crt", "server.crt", "server.key")}


@contextlib.contextmanager
def tls_terminator(target_port: int, files: dict[str, str]) -> Iterator[int]:
    """A real TLS endpoint in front of a plain Redis, as managed services put one: a thread serving
    TLS on a free port and relaying the decrypted bytes to ``target_port``; yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files["server.crt"], files["server.key"])
    port, ready = _free_port(), threading.Event()
    loop = asyncio.new_event_loop()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
        ready.set()
        async with server:
            await server.serve_forever()

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # how the fixture stops it
            loop.run_until_complete(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        thread.join(10)
        loop.close()
