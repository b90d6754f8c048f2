"""The event loop a server process runs on (``LIYA_EVENT_LOOP``).

uvloop is the default: with the same code it took 5 to 20% less server CPU
per request than the standard loop in every scenario of ``make bench``. The
standard loop stays selectable in case a platform or a library misbehaves
on uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], kind: str) -> T:
    """Run ``main`` to completion on a new loop of ``kind``: "uvloop", or the
    standard loop for anything else (``Settings`` accepts only the two)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
