"""Completion use cases: check, route, bound the cost, call the provider, account.

Plain async code, no grpc. Inputs are domain values; the caller's remaining
deadline comes in as seconds so the provider call never outlives the caller.
A call is checked (``checks``) before anything is read or sent, planned
(``plan``: provider, model, credentials, cost bound, budget), made through the
provider's adapter (``ports.ProviderAdapter``; a stream through ``relay``) and
accounted (usage, cost, latency, metrics, and the usage ledger,
``ports.UsageRecorder``: every call that reached a provider, whatever its
outcome). Each provider call has a
client span while tracing is on (``liya_engine.tracing.provider``; ``None``
and no work while it is off). The outcome of each byok call goes to the key
health recorder (``liya_engine.config.health_recorder``: memory only on this
path).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping

import liya_engine.tracing as tracing
from liya_engine.config.health import HEALTH_REASONS, shown_message
from liya_engine.config.health_recorder import HealthRecorder
from liya_engine.config.verify import TestedCredentials
from liya_engine.errors import (
    DeadlineExceeded,
    ProviderError,
    ProviderTimedOut,
    ProviderUnavailable,
)
from liya_engine.inference.checks import check_call
from liya_engine.inference.estimate import estimate_prompt_tokens, estimate_text_tokens
from liya_engine.inference.latency import LatencyTracker
from liya_engine.inference.learned import LearnedModels
from liya_engine.inference.plan import Plan, Planner
from liya_engine.inference.ports import (
    Message,
    ProviderAdapter,
    StreamDelta,
    StreamEnd,
    UsageRecorder,
)
from liya_engine.inference.probe import probe_plan
from liya_engine.inference.relay import relay
from liya_engine.inference.tenants import TenantCache
from liya_engine.inference.values import (
    Completion,
    CompletionInput,
    StreamPiece,
    Usage,
    VerifyResult,
)
from liya_engine.metrics import Metrics
from liya_engine.providers import facts
from liya_engine.routing import prices
from liya_engine.routing.catalog import Catalog
from liya_engine.settings import Settings
from liya_engine.tracing import provider as spans
from liya_engine.usage.ledger import VERIFY_INTENT, NoLedger

__all__ = [
    "Completion",
    "CompletionInput",
    "InferenceService",
    "StreamPiece",
    "Usage",
    "VerifyResult",
]


class InferenceService:
    """Runs completion calls for tenants."""

    def __init__(
        self,
        tenants: TenantCache,
        adapters: Mapping[str, ProviderAdapter],
        catalog: Catalog,
        settings: Settings,
        metrics: Metrics,
        learned: LearnedModels | None = None,
        usage: UsageRecorder | None = None,
        health: HealthRecorder | None = None,
    ) -> None:
        self._tenants = tenants
        self._settings = settings
        self.learned = learned
        self.usage: UsageRecorder = usage or NoLedger()
        self._health = health
        self.adapters = adapters
        self._catalog = catalog
        self._metrics = metrics
        self.latency = LatencyTracker()
        self._planner = Planner(catalog, settings, self.latency)
        self.managed_providers: tuple[str, ...] = self._planner.managed_providers

    # -- public use cases -----------------------------------------------------

    async def complete(
        self, tenant_id: str, request_id: str, call: CompletionInput, *, deadline: float | None
    ) -> Completion:
        """One completion for ``tenant_id``; raises the errors of DESIGN.md's table."""
        plan = await self._plan(tenant_id, call, deadline)
        adapter = self.adapters[plan.creds.provider]
        traced = _trace_call(plan, call.intent)
        started = time.perf_counter()
        try:
            result = await adapter.complete(plan.creds, plan.request)
        except ProviderError as exc:
            raise self._failed(plan, exc, started, traced) from None
        except BaseException as exc:
            self._interrupted(plan, exc, 0)
            spans.failed(traced, exc)
            raise
        elapsed = time.perf_counter() - started
        usage = self._account(
            plan, result.input_tokens, result.output_tokens, request_id, elapsed, result.model
        )
        _trace_success(traced, usage, result.model)
        return Completion(result.text, result.finish_reason, usage)

    async def complete_stream(
        self, tenant_id: str, request_id: str, call: CompletionInput, *, deadline: float | None
    ) -> AsyncIterator[StreamPiece]:
        """Deltas of one completion, then a piece with the finish reason and usage;
        a provider failure, also mid-stream, is raised."""
        plan = await self._plan(tenant_id, call, deadline)
        adapter = self.adapters[plan.creds.provider]
        traced = _trace_call(plan, call.intent)
        started = time.perf_counter()
        stream = adapter.stream(plan.creds, plan.request)
        relayed = relay(stream)
        produced = 0  # characters of answer so far, -1 once the usage is accounted
        try:
            async for event in relayed:
                if isinstance(event, StreamDelta):
                    if event.text:
                        produced += len(event.text)
                        yield StreamPiece(delta=event.text)
                elif isinstance(event, StreamEnd):
                    produced = -1
                    usage = self._account(
                        plan,
                        event.input_tokens,
                        event.output_tokens,
                        request_id,
                        time.perf_counter() - started,
                        event.model,
                    )
                    # Traced before the last piece is handed on: the caller may
                    # stop reading once it has the usage.
                    _trace_success(traced, usage, event.model)
                    traced = None
                    yield StreamPiece(finish_reason=event.finish_reason, usage=usage)
                    return
        except ProviderError as exc:
            raise self._failed(plan, exc, started, traced, produced) from None
        except BaseException as exc:
            if produced >= 0:
                self._interrupted(plan, exc, produced)
            spans.failed(traced, exc)
            raise
        finally:
            await relayed.aclose()  # stops the reading before the stream is closed
            await stream.aclose()
        raise self._failed(
            plan,
            ProviderUnavailable(
                f"{facts.TITLES[plan.creds.provider]} ended the stream without finishing the "
                "answer; retry the call",
                provider=plan.creds.provider,
                model=plan.request.model,
            ),
            started,
            traced,
            produced,
        )

    async def verify(
        self, tenant_id: str, request_id: str, *, intent: str, deadline: float | None
    ) -> VerifyResult:
        """A minimal real call through the provider the tenant's calls use now."""
        call = CompletionInput(
            intent=intent or "general_chat",
            messages=(Message("user", "Reply with OK."),),
            max_tokens=1,
        )
        # Without an intent, verify what the serving provider's default model does.
        plan = await self._plan(
            tenant_id, call, deadline, check_cost=False, default_model_only=not intent
        )
        return await self._verified(plan, call.intent, request_id)

    async def verify_credentials(
        self,
        tenant_id: str,
        request_id: str,
        credentials: TestedCredentials,
        *,
        deadline: float | None,
    ) -> None:
        """UpdateConfig's ``verify``: a minimal real call with credentials not
        stored yet, answering with the errors a completion would
        (``config.verify.CredentialsProbe``). Counted under intent ``verify``."""
        plan = probe_plan(
            self._planner, self._catalog, self._settings, credentials, deadline, tenant_id
        )
        await self._verified(plan, VERIFY_INTENT, request_id)

    async def _verified(self, plan: Plan, intent: str, request_id: str) -> VerifyResult:
        """Make a verify call (VerifyConfig's or UpdateConfig's, attributed to
        ``intent``) and account it: the one place both kinds are counted."""
        traced = _trace_call(plan, intent)
        plan = dataclasses.replace(plan, intent=VERIFY_INTENT)  # the ledger's intent
        started = time.perf_counter()
        try:
            result = await self.adapters[plan.creds.provider].complete(plan.creds, plan.request)
        except ProviderError as exc:
            raise self._failed(plan, exc, started, traced) from None
        except BaseException as exc:
            self._interrupted(plan, exc, 0)
            spans.failed(traced, exc)
            raise
        elapsed = time.perf_counter() - started
        usage = self._account(
            plan, result.input_tokens, result.output_tokens, request_id, elapsed, result.model
        )
        _trace_success(traced, usage, result.model)
        return VerifyResult(plan.creds.provider, plan.request.model, plan.mode, elapsed, usage)

    # -- steps ------------------------------------------------------------------

    async def _plan(
        self,
        tenant_id: str,
        call: CompletionInput,
        deadline: float | None,
        *,
        check_cost: bool = True,
        default_model_only: bool = False,
    ) -> Plan:
        # The call's own shape first: a malformed call is INVALID_REQUEST even
        # while the database cannot be read.
        check_call(call, self._catalog.intents)
        tenant = await self._tenants.get(tenant_id)
        if tenant.learned is None:  # once per cached config
            if self.learned is not None and self._planner.needs_learned(tenant):
                await self.learned.load(tenant)
            else:
                tenant.learned = {}
        spent = None
        if tenant.config.model.monthly_budget_usd is not None:
            spent = await self.usage.spent(tenant_id)
        plan = self._planner.plan(
            tenant,
            call,
            deadline,
            check_cost=check_cost,
            default_model_only=default_model_only,
            spent_usd=spent,
        )
        if plan.reserved_usd:  # no await since ``spent``: no other call saw this budget
            self.usage.reserve(tenant_id, plan.reserved_usd)
        return plan

    def _failed(
        self,
        plan: Plan,
        exc: ProviderError,
        started: float,
        traced: spans.ProviderCall | None,
        produced: int = 0,
    ) -> Exception:
        """Account a failed provider call (``produced`` characters of answer
        came before it failed); return what the caller is to get."""
        elapsed = time.perf_counter() - started
        self._record(plan, *self._estimated(plan, produced), failed=True)
        self._metrics.provider_call(
            plan.creds.provider, plan.request.model, plan.mode, exc.reason, elapsed
        )
        if isinstance(exc, ProviderTimedOut) and plan.caller_bound:
            deadline = DeadlineExceeded()
            spans.failed(traced, deadline)
            return deadline
        if plan.health is not None and self._health is not None and exc.reason in HEALTH_REASONS:
            message = shown_message(exc.message, (plan.creds.api_key,))
            self._health.failed(
                plan.health.tenant_id, plan.creds.provider, plan.health.version, exc.reason, message
            )
        if not exc.model:
            exc.model = plan.request.model
            exc.metadata.setdefault("model", plan.request.model)
        exc.metadata.setdefault("mode", plan.mode)
        spans.failed(traced, exc)
        return exc

    def _account(
        self,
        plan: Plan,
        input_tokens: int,
        output_tokens: int,
        request_id: str,
        elapsed: float,
        served_model: str,
    ) -> Usage:
        provider, model = plan.creds.provider, plan.request.model
        if plan.learns and plan.tenant and self.learned is not None:
            self.learned.learn(plan.tenant, model, served_model)
        price = self._planner.settle(plan, served_model)
        cost = price.cost(input_tokens, output_tokens) if price else 0.0
        self.latency.observe(provider, model, elapsed)
        self._metrics.provider_call(provider, model, plan.mode, "", elapsed)
        self._metrics.usage(provider, model, input_tokens, output_tokens, cost, priced=bool(price))
        if plan.health is not None and self._health is not None:
            self._health.succeeded(plan.health.tenant_id, provider, plan.health.version)
        usage = Usage(
            input_tokens,
            output_tokens,
            round(cost, 10),
            provider,
            model,
            plan.mode,
            request_id,
            served_model,
            price.source if price else prices.UNPRICED,
        )
        self.usage.record(
            plan.tenant_id,
            provider,
            model,
            plan.intent,
            plan.mode,
            input_tokens,
            output_tokens,
            usage.cost_usd,
            False,
            plan.reserved_usd,
        )
        return usage

    # -- the usage ledger ---------------------------------------------------------

    def _record(self, plan: Plan, input_tokens: int, output_tokens: int, *, failed: bool) -> None:
        """Add a call that ended without ``_account`` to the ledger."""
        cost = plan.price.cost(input_tokens, output_tokens) if plan.price else 0.0
        self.usage.record(
            plan.tenant_id,
            plan.creds.provider,
            plan.request.model,
            plan.intent,
            plan.mode,
            input_tokens,
            output_tokens,
            round(cost, 10),
            failed,
            plan.reserved_usd,
        )

    @staticmethod
    def _estimated(plan: Plan, produced: int) -> tuple[int, int]:
        """Tokens of a call that ended before the provider reported usage: none
        if nothing was produced, else the prompt and the text so far, estimated."""
        if produced <= 0:
            return 0, 0
        return estimate_prompt_tokens(plan.request.messages), estimate_text_tokens(produced)

    def _interrupted(self, plan: Plan, exc: BaseException, produced: int) -> None:
        """A call that ended by something other than the provider's answer: a
        cancel (not a failure; the prompt was sent, so it counts, estimated)
        or an unexpected error (a failure)."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            prompt = estimate_prompt_tokens(plan.request.messages)
            self._record(plan, prompt, estimate_text_tokens(produced), failed=False)
        else:
            self._record(plan, *self._estimated(plan, produced), failed=True)


def _trace_call(plan: Plan, intent: str) -> spans.ProviderCall | None:
    if tracing.TRACER is None:  # off: one check, nothing made
        return None
    return spans.start(plan.creds.provider, plan.request.model, intent=intent, mode=plan.mode)


def _trace_success(traced: spans.ProviderCall | None, usage: Usage, response_model: str) -> None:
    if traced is None:
        return
    spans.succeeded(
        traced,
        response_model=response_model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )
