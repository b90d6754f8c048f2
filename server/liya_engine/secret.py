"""A string type for secrets whose repr and str never show the value."""

from __future__ import annotations

import hmac


class Secret:
    """Holds a secret string; ``str()``/``repr()`` are masked.

    Use ``reveal()`` at the single point where the value must leave (an SDK
    client, the cipher). Equality compares values in constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self):  # never pickle a secret into a cache or a log record
        raise TypeError("Secret values cannot be pickled")
