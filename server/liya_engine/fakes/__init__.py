"""Fakes of external services, for tests and local development.

``FakeProviders`` serves the OpenAI, Anthropic and Azure OpenAI wire formats on
loopback. In a test::

    async with FakeProviders.start() as fake:
        fake.fail("openai", "rate_limit", retry_after=3)
        ...  # call an SDK with base_url=fake.openai_base_url
        assert fake.last_request.api_key == "sk-test"

Layout: ``server`` (the aiohttp app, its provider routes, the record of
requests), ``control`` (the ``/_control/*`` routes), ``failures`` (the
failure kinds and queued rules), ``real_answers`` (error answers exactly as
the real APIs send them, headers included), ``replies`` (writing answers,
streams and errors), ``malformed`` (answers that break the API's promise),
``answer`` (the deterministic answer), ``openai_format``, ``anthropic_format``
and ``azure_format`` (one module per wire format), ``served`` (the model name
an answer reports, dated as the providers date it).
This package exports the public names; it may import aiohttp and the
standard library, never the service's own modules (a fake cannot agree with
a bug), and of the service only the ``fake-providers`` command imports it.

As a pytest fixture::

    @pytest.fixture
    async def fake():
        async with FakeProviders.start() as running:
            yield running
"""

from liya_engine.fakes.answer import answer_words, count_prompt_tokens
from liya_engine.fakes.failures import FAILURE_KINDS
from liya_engine.fakes.recording import RecordedRequest
from liya_engine.fakes.server import (
    PROVIDER_NAMES,
    FakeProviders,
    bind_refused_port,
    main_forever,
)

#: ``async with start_fake_providers(host, port) as fake:`` (same as ``FakeProviders.start``).
start_fake_providers = FakeProviders.start

__all__ = [
    "FAILURE_KINDS",
    "PROVIDER_NAMES",
    "FakeProviders",
    "RecordedRequest",
    "answer_words",
    "bind_refused_port",
    "count_prompt_tokens",
    "main_forever",
    "start_fake_providers",
]
