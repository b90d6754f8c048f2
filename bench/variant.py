"""``python bench/variant.py NAME serve ...``: ``liya-engine serve`` with one
part of the per-call path removed, as the "off" side of ``feature_ab``.

Only for the benchmark: a variant is the deployed server less one piece, so
the difference of the two is what that piece costs. The patches are applied
before the command starts, so the workers of ``--workers`` (forked) inherit
them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _no_health() -> None:
    # Key health has no off switch (it is part of the contract): the recorder's
    # two per-call methods become no-ops. Its writer then never has anything due.
    from liya_engine.config.health_recorder import HealthRecorder

    def nothing(self: HealthRecorder, *args: object) -> None:
        return None

    HealthRecorder.succeeded = nothing  # type: ignore[method-assign]
    HealthRecorder.failed = nothing  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {"no-health": _no_health}


def main(argv: list[str]) -> int:
    """Apply the variant named by ``argv[0]``, then run the command in ``argv[1:]``."""
    if not argv or argv[0] not in VARIANTS:
        print(f"usage: variant.py {{{','.join(VARIANTS)}}} serve [...]", file=sys.stderr)
        return 2
    VARIANTS[argv[0]]()
    from liya_engine.cli import main as cli_main

    return cli_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
