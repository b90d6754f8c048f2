"""Observed provider latency, for the ``latency-optimised`` strategy."""

from __future__ import annotations


class LatencyTracker:
    """Exponentially weighted moving average of provider latency per model."""

    def __init__(self, alpha: float = 0.2) -> None:
        self._alpha = alpha
        self._values: dict[tuple[str, str], float] = {}

    def observe(self, provider: str, model: str, seconds: float) -> None:
        """Fold one call's latency into the average of ``(provider, model)``."""
        key = (provider, model)
        old = self._values.get(key)
        self._values[key] = seconds if old is None else old + self._alpha * (seconds - old)

    def __call__(self, provider: str, model: str) -> float | None:
        """The average so far, or None before the first call."""
        return self._values.get((provider, model))
