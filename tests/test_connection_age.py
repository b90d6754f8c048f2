"""Connections are recycled every 5 minutes, and the calls still open on an
aged connection may run as long as a provider call may take."""

from __future__ import annotations

from helpers import JWT_SECRET
from liya_engine.app import connection_age_options
from liya_engine.settings import Settings


def options(**env: str) -> dict[str, int]:
    return dict(
        connection_age_options(Settings.from_env({"LIYA_JWT_HS256_SECRET": JWT_SECRET, **env}))
    )


def test_an_aged_connection_keeps_its_calls_for_the_longest_provider_call():
    # The default upstream timeout is 60 s: a stream of 60 s opened just before
    # the connection's age is reached must not be cut (a grace of 30 s cut them).
    assert options() == {
        "grpc.max_connection_age_ms": 300_000,
        "grpc.max_connection_age_grace_ms": 65_000,
    }
    assert (
        options(LIYA_UPSTREAM_TIMEOUT_SECONDS="240")["grpc.max_connection_age_grace_ms"] == 245_000
    )
