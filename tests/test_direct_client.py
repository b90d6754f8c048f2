"""The shared pool's client (``DirectClient``) and its transport's early close.

A request goes straight to the transport: no redirect is ever followed, no
httpx2 auth is applied, a transport error names its request, ``elapsed`` is
there as httpx2 gives it. A body that has arrived whole is closed, and its
connection back in the pool, before its last chunk reaches the reader, so an
SDK stream that stops at its end event has nothing left to drain; the next
call reuses the connection.
"""

from __future__ import annotations

import httpx2
import openai
import pytest
from aiohttp import web
from test_transport import http_server, refused_url

from liya_engine.providers.direct_client import DirectClient
from liya_engine.providers.sdk_clients import new_http_client
from liya_engine.providers.transport import AiohttpTransport


@pytest.mark.parametrize(
    "options",
    [
        {"follow_redirects": True},
        {"auth": ("user", "password")},
        {"mounts": {"http://": httpx2.AsyncHTTPTransport()}},
        {"proxy": "http://127.0.0.1:3128"},
    ],
    ids=["follow_redirects", "auth", "mounts", "proxy"],
)
def test_options_that_would_bypass_the_transport_are_refused(options):
    with pytest.raises(ValueError, match="DirectClient"):
        DirectClient(transport=AiohttpTransport(), **options)


async def test_a_redirect_is_returned_even_when_the_caller_asks_to_follow_it():
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/elsewhere")

    async with http_server(redirect) as url, new_http_client() as http:
        request = http.build_request("GET", f"{url}/start")
        answer = await http.send(request, follow_redirects=True)
    assert answer.status_code == 302
    assert answer.headers["location"] == "/elsewhere"
    assert hits == ["/start"]


async def test_an_httpx2_auth_given_per_request_is_refused_not_skipped():
    async with new_http_client() as http:
        request = http.build_request("GET", "http://127.0.0.1:9/")
        with pytest.raises(TypeError, match="credentials in the headers"):
            await http.send(request, auth=httpx2.BasicAuth("user", "password"))


async def test_a_transport_error_names_the_request_it_failed():
    async with new_http_client() as http:
        request = http.build_request("GET", refused_url())
        with pytest.raises(httpx2.ConnectError) as caught:
            await http.send(request)
    assert caught.value.request is request


async def test_a_request_without_a_timeout_gets_the_clients():
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with http_server(ok) as url, new_http_client(connect_timeout=3.0) as http:
        request = httpx2.Request("GET", url)
        answer = await http.send(request)
    assert answer.text == "ok"
    assert request.extensions["timeout"] == {
        "connect": 3.0,
        "read": 60.0,
        "write": 60.0,
        "pool": 60.0,
    }


async def test_elapsed_is_there_once_the_answer_is_read_or_closed():
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with http_server(ok) as url, new_http_client() as http:
        answer = await http.get(url)
        assert answer.elapsed.total_seconds() > 0
        async with http.stream("GET", url) as streamed:
            with pytest.raises(RuntimeError, match="elapsed"):
                _ = streamed.elapsed
        assert streamed.elapsed.total_seconds() > 0


async def test_a_body_that_arrived_whole_is_closed_before_its_last_chunk_is_read():
    peers: list[int] = []

    async def whole(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(body=b"x" * 64)

    async with http_server(whole) as url, new_http_client() as http:
        for _ in range(2):
            async with http.stream("GET", url) as response:
                chunks = response.aiter_raw().__aiter__()
                assert await chunks.__anext__() == b"x" * 64
                # The body's one chunk is in the reader's hands, and the
                # response is closed already: nothing was left to read.
                assert response.is_closed
    assert len(peers) == 2 and peers[0] == peers[1], "the second call reused the connection"


async def test_an_sdk_stream_read_to_its_end_leaves_the_connection_for_the_next():
    peers: list[int] = []
    events = [
        b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
        b"data: [DONE]\n\n",
    ]

    async def stream(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername")[1])
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    async with http_server(stream) as url, new_http_client() as http:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=f"{url}/v1", http_client=http)
        for _ in range(2):
            upstream = await client.post(
                "/chat/completions",
                body={"model": "m", "messages": [], "stream": True},
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            got = [event async for event in upstream]
            assert got[0]["choices"][0]["delta"] == {"content": "hi"}
            assert upstream.response.is_closed
    assert len(peers) == 2 and peers[0] == peers[1], "the second stream reused the connection"
