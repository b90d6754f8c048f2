"""Connections that never finish the HTTP/2 handshake are closed by the server
within LIYA_HANDSHAKE_TIMEOUT_SECONDS (10 s by default), so half-open
connections cannot pile up; connections that did finish it keep working."""

from __future__ import annotations

import asyncio

import pytest

from helpers import auth
from liya.engine.v1 import config_service_pb2 as cpb

# The client connection preface of RFC 9113, section 3.4 (before SETTINGS).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Room for a loaded machine: the bound is the setting, not this.
SLACK_SECONDS = 6.0


async def _closed_by_server(port: int, send: bytes, within: float) -> bool:
    """Connect, send ``send`` and nothing more; whether the server closes the
    connection within ``within`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if send:
            writer.write(send)
            await writer.drain()
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass  # the server's own SETTINGS may come first
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        writer.close()


async def test_idle_and_half_sent_connections_are_closed_within_the_default_ten_seconds(servers):
    running, stubs = await servers.start()
    attempts = [b"", PREFACE[:10], PREFACE] * 10  # silent, half a preface, no SETTINGS
    closed = await asyncio.gather(
        *(_closed_by_server(running.port, send, 10.0 + SLACK_SECONDS) for send in attempts)
    )
    assert closed == [True] * len(attempts)
    # A real client is not affected.
    reply = await stubs.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(), metadata=auth("t-handshake"), timeout=10
    )
    assert reply.config.mode == "managed"  # a tenant with nothing stored


@pytest.mark.parametrize("seconds", ["1.5"])
async def test_the_handshake_timeout_is_a_setting(servers, seconds):
    running, _ = await servers.start(LIYA_HANDSHAKE_TIMEOUT_SECONDS=seconds)
    assert await _closed_by_server(running.port, PREFACE[:5], float(seconds) + SLACK_SECONDS)
