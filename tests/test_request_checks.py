"""A malformed completion call is refused before any I/O.

Through a real server whose database stops answering while it runs (the line
to its PostgreSQL is cut: open connections closed, new ones refused): a
well-formed call for an uncached tenant cannot be served
(STORAGE_UNAVAILABLE), while a malformed Complete or CompleteStream is still
INVALID_ARGUMENT / INVALID_REQUEST naming the field, and nothing reaches a
provider.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from sqlalchemy.engine import make_url

from helpers import auth, details_of
from liya.engine.v1 import inference_service_pb2 as ipb

GOOD = [ipb.ChatMessage(role="user", content="Tell me about interviews")]
MALFORMED = [
    ({"messages": []}, "messages"),
    ({"messages": [ipb.ChatMessage(role="wizard", content="hi")]}, "messages[0].role"),
    ({"messages": [ipb.ChatMessage(role="user", content=" ")]}, "messages[0].content"),
    ({"messages": [ipb.ChatMessage(role="system", content="hi")]}, "messages"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"intent": "astrology"}, "intent"),
]


class DatabaseLine:
    """A TCP relay between the server and PostgreSQL that can be cut: once
    ``cut()``, open connections are closed and new ones are refused, which is
    what the server sees of a stopped database."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


async def _complete(stubs, tenant: str, **kw) -> ipb.CompleteResponse:
    kw = {"intent": "general_chat", "messages": GOOD, **kw}
    return await stubs.inference.Complete(
        ipb.CompleteRequest(**kw), metadata=auth(tenant), timeout=20
    )


async def _stream(stubs, tenant: str, **kw) -> list[ipb.CompleteStreamResponse]:
    kw = {"intent": "general_chat", "messages": GOOD, **kw}
    call = stubs.inference.CompleteStream(
        ipb.CompleteStreamRequest(**kw), metadata=auth(tenant), timeout=20
    )
    return [piece async for piece in call]


async def test_malformed_calls_are_invalid_argument_while_the_database_is_down(
    servers, postgres_url, fake
):
    url = make_url(postgres_url)
    line = DatabaseLine(url.host or "127.0.0.1", url.port or 5432)
    await line.start()
    servers.base_env["LIYA_DATABASE_URL"] = url.set(port=line.port).render_as_string(False)
    _, s = await servers.start(LIYA_HEALTH_CHECK_SECONDS="60")
    await line.cut()

    # The database really cannot serve: a well-formed call fails on it.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _complete(s, "tenant-never-seen")
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")

    for call in (_complete, _stream):
        for i, (kw, field) in enumerate(MALFORMED):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(s, f"tenant-{i}", **kw)
            d = details_of(err.value)
            assert (d.code, d.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
            ), (call.__name__, kw, d)
            assert field in [v[0] for v in d.violations], (call.__name__, kw)
    assert fake.requests == []
