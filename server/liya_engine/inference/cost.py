"""The per-request cost bound: the worst case of a call before it is made.

Worst case = estimated prompt tokens x input price + max_tokens x output
price (``liya_engine.inference.estimate``). An unset max_tokens is lowered to
what fits under ``cost_limit_usd_per_request``; an explicit one that does not
fit is COST_LIMIT_EXCEEDED, saying the largest that would.
"""

from __future__ import annotations

import math

from liya_engine.errors import CostLimitExceeded
from liya_engine.inference.estimate import estimate_prompt_tokens
from liya_engine.inference.values import CompletionInput
from liya_engine.providers import facts
from liya_engine.routing.prices import Price


def how_to_price(provider: str, model: str, priced_as: str) -> str:
    """What the tenant sets so that calls to ``model`` (for Azure, the
    deployment, priced as ``priced_as``) have a price."""
    if provider == facts.AZURE and priced_as == model:
        return (
            f"set provider_config.azure.model to the model deployment {model!r} runs "
            "(such as gpt-4o), or its prices in model_config.prices"
        )
    return (
        f"set the prices of {priced_as!r} in model_config.prices "
        "(input_usd_per_million and output_usd_per_million)"
    )


def unpriced(limit: float, provider: str, model: str, priced_as: str) -> CostLimitExceeded:
    """COST_LIMIT_EXCEEDED for a call no price covers while a limit is set."""
    what = f"Azure deployment {model!r}" if provider == facts.AZURE else f"model {model!r}"
    if priced_as != model:
        what += f" (model {priced_as!r})"
    return CostLimitExceeded(
        f"{what} has no price (not in model_config.prices, not in the catalog), so a call "
        f"cannot be kept under the cost limit of ${limit:g}: "
        f"{how_to_price(provider, model, priced_as)}",
        metadata={"limit_usd": f"{limit:.6f}", "model": model, "provider": provider},
    )


def tokens_that_fit(limit: float, prompt_cost: float, per_output: float) -> int:
    """The most output tokens whose worst case stays within ``limit``, checked
    with the very sum the limit check uses (a division can round one over)."""
    fits = max(0, math.floor((limit - prompt_cost) / per_output))
    while fits > 0 and prompt_cost + fits * per_output > limit:
        fits -= 1
    return fits


def fit_cost(
    limit: float | None,
    price: Price | None,
    model: str,
    call: CompletionInput,
    provider: str,
    *,
    default_max_tokens: int,
    priced_as: str = "",
) -> int:
    """The max_tokens to send: the caller's, or the default lowered to fit
    ``limit`` at ``price`` (the resolved price of ``priced_as``, the name
    ``model`` is priced as); raise ``CostLimitExceeded`` when the call cannot
    fit or has no price."""
    default = default_max_tokens
    if price is not None and price.info is not None:
        default = min(default, price.info.max_output_tokens)
    if limit is None:
        return call.max_tokens if call.max_tokens is not None else default
    meta = {"limit_usd": f"{limit:.6f}", "model": model, "provider": provider}
    if price is None:
        raise unpriced(limit, provider, model, priced_as or model)
    prompt = estimate_prompt_tokens(call.messages)
    prompt_cost = prompt * price.input_per_million / 1_000_000
    per_output = price.output_per_million / 1_000_000
    if call.max_tokens is not None:
        estimate = prompt_cost + call.max_tokens * per_output
        if estimate > limit:
            fits = tokens_that_fit(limit, prompt_cost, per_output)
            raise CostLimitExceeded(
                f"worst-case cost ${estimate:.6f} ({prompt} prompt tokens estimated + "
                f"{call.max_tokens} max_tokens on {model}) is above the limit of "
                f"${limit:g}: lower max_tokens to at most {fits} or raise the limit",
                metadata={
                    **meta,
                    "estimate_usd": f"{estimate:.6f}",
                    "max_tokens_that_fit": str(fits),
                },
            )
        return call.max_tokens
    affordable = tokens_that_fit(limit, prompt_cost, per_output) if per_output else default
    if affordable < 1:
        raise CostLimitExceeded(
            f"the prompt alone is estimated at ${prompt_cost:.6f} ({prompt} tokens on "
            f"{model}), at or above the limit of ${limit:g}: shorten the prompt or raise "
            "the limit",
            metadata={**meta, "estimate_usd": f"{prompt_cost:.6f}"},
        )
    return min(default, affordable)
