"""The fake providers' public names, under the module path tests and tools import.

The fake lives in ``server`` (routes, steering, the record of requests),
``failures`` (how a test asks for a failure), ``replies`` (how an answer or a
failure is written), ``answer`` (the deterministic answer) and one module per
wire format (``openai_format``, ``anthropic_format``, ``azure_format``).
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

__all__ = [
    "FAILURE_KINDS",
    "PROVIDER_NAMES",
    "FakeProviders",
    "RecordedRequest",
    "answer_words",
    "bind_refused_port",
    "count_prompt_tokens",
    "main_forever",
]
