"""The plan of a verify call made with credentials an update would store
(``UpdateConfigRequest.verify``): the same adapters, timeouts and endpoint
rule as a completion, a one-token answer, and no key health of its own (the
credentials are not stored yet; the config plane records the outcome when it
writes them)."""

from __future__ import annotations

from typing import Final

from liya_engine.config.model import MODE_BYOK
from liya_engine.config.verify import TestedCredentials
from liya_engine.inference.plan import Plan, Planner
from liya_engine.inference.ports import Credentials, Message, ProviderRequest
from liya_engine.providers import facts
from liya_engine.routing.catalog import Catalog
from liya_engine.routing.prices import resolve
from liya_engine.settings import Settings
from liya_engine.usage.ledger import VERIFY_INTENT

PROBE_MESSAGES: Final = (Message("user", "Reply with OK."),)
PROBE_MAX_TOKENS: Final = 1


def probe_plan(
    planner: Planner,
    catalog: Catalog,
    settings: Settings,
    tested: TestedCredentials,
    deadline: float | None,
    tenant_id: str,
) -> Plan:
    """The plan of one minimal call with ``tested``; raises the deadline and
    endpoint errors a completion would."""
    if tested.provider == facts.AZURE:
        planner.check_endpoint(tested.endpoint)
        creds = Credentials("azure", tested.api_key, tested.endpoint, tested.api_version)
        model = tested.deployment_name
    else:
        base = (
            settings.anthropic_base_url
            if tested.provider == facts.ANTHROPIC
            else settings.openai_base_url
        )
        creds = Credentials(tested.provider, tested.api_key, base)  # type: ignore[arg-type]
        model = tested.default_model or catalog.default_models.get(tested.provider, "")
    timeout, caller_bound = planner.budget(deadline)
    request = ProviderRequest(
        model=model, messages=PROBE_MESSAGES, max_tokens=PROBE_MAX_TOKENS, timeout=timeout
    )
    # Priced at list price: the tenant's own prices may be part of the same
    # update and are not stored yet.
    price = resolve(model, {}, catalog)
    return Plan(
        creds,
        request,
        price,
        MODE_BYOK,
        caller_bound,
        priced_as=model,
        tenant_id=tenant_id,
        intent=VERIFY_INTENT,
    )
