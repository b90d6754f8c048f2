"""The shape of a completion call, checked before any I/O.

A malformed call (no messages, an unknown role or intent, max_tokens or
temperature out of range) is INVALID_REQUEST whatever state the database or
the providers are in: nothing here reads a tenant or calls anyone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection

from liya_engine.errors import FieldViolation, InvalidRequest
from liya_engine.inference.values import CompletionInput
from liya_engine.redact import shown

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 256
MAX_INPUT_CHARS = 1_000_000
MAX_TOKENS_CEILING = 200_000

_INTENT_SHAPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _shown_intent(intent: str) -> str:
    # Only name-shaped input is echoed back; anything else may be a pasted key.
    return shown(intent, _INTENT_SHAPE)


def _message_violations(call: CompletionInput) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if not call.messages:
        bad.append(FieldViolation("messages", "must have at least one message"))
    if len(call.messages) > MAX_MESSAGES:
        bad.append(FieldViolation("messages", f"must have at most {MAX_MESSAGES} messages"))
    for i, m in enumerate(call.messages[:MAX_MESSAGES]):
        if m.role not in ROLES:
            bad.append(FieldViolation(f"messages[{i}].role", "must be system, user or assistant"))
        if not m.content.strip():
            bad.append(FieldViolation(f"messages[{i}].content", "must not be empty"))
    if call.messages and call.messages[-1].role == "system":
        bad.append(FieldViolation("messages", "the last message must be user or assistant"))
    if sum(len(m.content) for m in call.messages) > MAX_INPUT_CHARS:
        bad.append(
            FieldViolation("messages", f"total text must be at most {MAX_INPUT_CHARS} characters")
        )
    return bad


def check_call(call: CompletionInput, intents: Collection[str]) -> None:
    """Raise ``InvalidRequest`` naming every violation of ``call``; ``intents``
    are the catalog's."""
    bad: list[FieldViolation] = []
    if call.intent not in intents:
        known = ", ".join(sorted(intents))
        bad.append(
            FieldViolation("intent", f"unknown intent {_shown_intent(call.intent)}; known: {known}")
        )
    bad += _message_violations(call)
    if call.max_tokens is not None and not 1 <= call.max_tokens <= MAX_TOKENS_CEILING:
        bad.append(FieldViolation("max_tokens", f"must be 1 to {MAX_TOKENS_CEILING}"))
    if call.temperature is not None and not (
        math.isfinite(call.temperature) and 0 <= call.temperature <= 2
    ):
        bad.append(FieldViolation("temperature", "must be from 0 to 2"))
    if bad:
        raise InvalidRequest(f"invalid request: {bad[0].field} {bad[0].description}", bad)
