"""What the fake received: one ``RecordedRequest`` per provider call."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    """One request the fake received, as tests want to see it."""

    provider: str
    method: str
    path: str
    query: dict[str, str]
    # Keys travel in these: keep them out of reprs (pytest failure output, logs).
    headers: dict[str, str] = field(repr=False)
    api_key: str | None = field(repr=False)
    body: Any
    model: str | None
    deployment: str | None
    stream: bool
    failure: str | None = None
    status: int | None = None
    completed: bool = False
    client_disconnected: bool = False
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what ``GET /_control/requests`` returns)."""
        return asdict(self)
