"""The monthly budget check, made before a call with the cost limit's estimate.

Worst case = estimated prompt tokens x input price + max_tokens x output price
(``liya_engine.inference.estimate``, the estimate ``cost_limit_usd_per_request``
uses). Month-to-date cost + worst case above ``monthly_budget_usd`` is
BUDGET_EXCEEDED; the worst case is then held against the budget until the
call is recorded (``UsageLedger.reserve``). Pure functions on plain values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

from liya_engine.errors import BudgetExceeded, CostLimitExceeded
from liya_engine.inference.estimate import estimate_prompt_tokens

BUDGET_FIELD = "model_config.monthly_budget_usd"


def resets_at(now: datetime | None = None) -> datetime:
    """When the month's budget starts over: the next UTC month's first instant."""
    now = now or datetime.now(UTC)
    if now.month == 12:
        return datetime(now.year + 1, 1, 1, tzinfo=UTC)
    return datetime(now.year, now.month + 1, 1, tzinfo=UTC)


class _Priced(Protocol):
    @property
    def input_per_million(self) -> float: ...

    @property
    def output_per_million(self) -> float: ...


class _HasContent(Protocol):
    @property
    def content(self) -> str: ...


def worst_case_usd(price: _Priced, messages: Iterable[_HasContent], max_tokens: int) -> float:
    """The most a call can cost: the prompt estimate and all of ``max_tokens``."""
    prompt = estimate_prompt_tokens(messages)
    return (prompt * price.input_per_million + max_tokens * price.output_per_million) / 1_000_000


def check_budget(
    budget_usd: float,
    spent_usd: float,
    price: _Priced | None,
    messages: Iterable[_HasContent],
    max_tokens: int,
    *,
    model: str,
    provider: str,
) -> float:
    """The worst case to hold against the budget; raise ``BudgetExceeded``
    when month-to-date plus it is above the budget, or ``CostLimitExceeded``
    when the model has no price (the budget could not be kept)."""
    if price is None:
        raise CostLimitExceeded(
            f"model {model!r} has no price, so a call cannot be kept within the monthly "
            f"budget of ${budget_usd:g}: set provider_config.azure.model or "
            f"model_config.prices, or remove {BUDGET_FIELD}",
            metadata={"model": model, "provider": provider, "budget_usd": f"{budget_usd:.6f}"},
        )
    worst = worst_case_usd(price, messages, max_tokens)
    if spent_usd + worst > budget_usd:
        resets = resets_at().strftime("%Y-%m-%dT%H:%M:%SZ")
        raise BudgetExceeded(
            f"the monthly budget of ${budget_usd:g} would be exceeded: ${spent_usd:.6f} "
            f"spent this month plus this call's worst case of ${worst:.6f} ({max_tokens} "
            f"max_tokens on {model}); it resets at {resets}. Raise {BUDGET_FIELD}, or "
            "lower max_tokens",
            metadata={
                "spent_usd": f"{spent_usd:.6f}",
                "budget_usd": f"{budget_usd:.6f}",
                "resets_at": resets,
                "estimate_usd": f"{worst:.6f}",
                "model": model,
                "provider": provider,
            },
        )
    return worst
