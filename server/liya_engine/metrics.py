"""Prometheus metrics, in the service's own registry.

Conventions (docs/operations.md, "Metrics", lists every series):

- RPCs use the gRPC ecosystem's names and labels (``grpc_server_handled_total``
  and ``grpc_server_handling_seconds`` with ``grpc_type``, ``grpc_service``,
  ``grpc_method``, ``grpc_code``), so queries written for that middleware work
  unchanged. Two additions: ``reason`` on the handled counter and
  ``grpc_code`` on the latency histogram. Instead of its
  ``grpc_server_started_total`` (one more locked increment per call), the
  ``liya_rpc_in_flight`` gauge: started = handled + in flight.
- ``reason`` is the ErrorInfo reason of a failure; a call or provider call that
  ended without one is labelled with its outcome's code name instead: ``OK``
  everywhere for success, ``CANCELLED`` for a call its caller cancelled. Never
  an empty value (Prometheus reads ``reason=""`` as "no such label").
- No ``_created`` series; the process and Python collectors are registered.
- Labels are bounded: methods, codes, reasons, providers, modes, and models
  (from the catalog or a tenant's config, the first 200 per process, then
  ``other``). Never a tenant, a request or a key.

This module imports no transport: the domain records through it.
"""

from __future__ import annotations

import importlib.metadata

from google.protobuf import descriptor_pool
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_MAX_MODEL_LABELS = 200
_DISTRIBUTION = "liya-engine"
#: The ``reason`` of a call or provider call that succeeded.
OK = "OK"

_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def build_version() -> str:
    """The installed version of the service's distribution."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # running from a bare source tree
        return "unknown"


def rpc_labels(method: str) -> tuple[str, str, str]:
    """``(grpc_type, grpc_service, grpc_method)`` of a full method path such as
    ``/liya.engine.v1.InferenceService/Complete``.

    The type comes from the method's descriptor, which the generated modules
    have put in protobuf's default pool by the time a call is served.
    """
    service, _, name = method.lstrip("/").rpartition("/")
    try:
        found = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:  # not one of ours (every served method is in the pool)
        return "unary", service, name
    kind = {
        (False, False): "unary",
        (False, True): "server_stream",
        (True, False): "client_stream",
        (True, True): "bidi_stream",
    }[(found.client_streaming, found.server_streaming)]
    return kind, service, name


class Metrics:
    """The service's metrics. ``registry`` is what ``/metrics`` exports."""

    def __init__(self) -> None:
        # Process-wide in prometheus_client: a ``_created`` series doubles every
        # counter and histogram child and no query of ours reads it.
        disable_created_metrics()
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)  # registers itself on CPython only
        Info("liya_build", "The running build", registry=registry).info(
            {"version": build_version()}
        )
        self.database = Gauge(
            "liya_database_up",
            "1 when the last health check found the configuration database usable "
            "(answering, and taking writes), else 0",
            registry=registry,
        )
        self.rpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by code and reason",
            (*_RPC_LABELS, "grpc_code", "reason"),
            registry=registry,
        )
        self.rpc_latency = Histogram(
            "grpc_server_handling_seconds",
            "RPC latency on the server, by code",
            (*_RPC_LABELS, "grpc_code"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rpc_in_flight = Gauge(
            "liya_rpc_in_flight",
            "RPCs being served now",
            _RPC_LABELS,
            registry=registry,
        )
        self.provider_calls = Counter(
            "liya_provider_calls_total",
            "Upstream provider calls",
            ["provider", "model", "mode", "reason"],
            registry=registry,
        )
        self.provider_latency = Histogram(
            "liya_provider_duration_seconds",
            "Upstream provider call latency, by outcome",
            ["provider", "reason"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "liya_tokens_total",
            "Tokens used",
            ["provider", "model", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "liya_cost_usd_total",
            "Cost at the resolved prices (the tenant's own where set, else the catalog's), USD",
            ["provider", "model"],
            registry=registry,
        )
        self.unpriced_calls = Counter(
            "liya_unpriced_calls_total",
            "Answered provider calls that no price covers (reported at cost 0)",
            ["provider"],
            registry=registry,
        )
        self.config_cache = Counter(
            "liya_config_cache_total",
            "Tenant config cache lookups",
            ["result"],
            registry=registry,
        )
        self.usage_dropped = Counter(
            "liya_usage_dropped_calls_total",
            "Calls left out of the usage ledger: the unwritten aggregate was full",
            registry=registry,
        )
        self.usage_flush_failures = Counter(
            "liya_usage_flush_failures_total",
            "Usage ledger flushes that failed (their totals are kept and retried)",
            registry=registry,
        )
        self.usage_flush_lag = Gauge(
            "liya_usage_flush_lag_seconds",
            "Seconds since the usage ledger last had everything written to the database",
            registry=registry,
        )
        self.key_health_transitions = Counter(
            "liya_key_health_transitions_total",
            "Changes of a tenant key's health state (unknown, ok, failing) seen by "
            "this process's calls, by provider",
            ["provider", "from_state", "to_state"],
            registry=registry,
        )
        self._models: set[str] = set()
        self._children: dict[tuple, object] = {}
        # Per method: (in-flight child, its labels).
        self._methods: dict[str, tuple] = {}
        # Per (method, code, reason): (handled child, latency child, in-flight child).
        self._done: dict[tuple[str, str, str], tuple] = {}
        self.calls_in_flight = 0  # all methods: what a drain waits for

    def _model(self, model: str) -> str:
        if model in self._models or len(self._models) < _MAX_MODEL_LABELS:
            self._models.add(model)
            return model
        return "other"

    def _child(self, metric, *labels: str):
        # labels() validates and hashes on every call; the children are reused.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _method(self, method: str) -> tuple:
        entry = self._methods.get(method)
        if entry is None:
            labels = rpc_labels(method)
            entry = self._methods[method] = (self._child(self.rpc_in_flight, *labels), labels)
        return entry

    def rpc_started(self, method: str) -> None:
        """A call of ``method`` (its full path) began; ``rpc_done`` ends it."""
        (self._methods.get(method) or self._method(method))[0].inc()
        self.calls_in_flight += 1

    def rpc_done(self, method: str, code: str, reason: str, seconds: float) -> None:
        """A call of ``method`` ended with the gRPC code name ``code`` and the
        ErrorInfo ``reason`` ("" when the call sent none: success or cancel)."""
        key = (method, code, reason)
        done = self._done.get(key)
        if done is None:
            in_flight, labels = self._method(method)
            done = self._done[key] = (
                self._child(self.rpc_handled, *labels, code, reason or code),
                self._child(self.rpc_latency, *labels, code),
                in_flight,
            )
        handled, latency, in_flight = done
        in_flight.dec()
        self.calls_in_flight -= 1
        handled.inc()
        latency.observe(seconds)

    def provider_call(
        self, provider: str, model: str, mode: str, reason: str, seconds: float
    ) -> None:
        """One upstream call; ``reason`` is "" on success."""
        reason = reason or OK
        self._child(self.provider_calls, provider, self._model(model), mode, reason).inc()
        self._child(self.provider_latency, provider, reason).observe(seconds)

    def usage(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        *,
        priced: bool = True,
    ) -> None:
        """One answered call's tokens and cost; ``priced`` False when no price
        covers its model (counted in ``liya_unpriced_calls_total``)."""
        model = self._model(model)
        self._child(self.tokens, provider, model, "input").inc(input_tokens)
        self._child(self.tokens, provider, model, "output").inc(output_tokens)
        self._child(self.cost, provider, model).inc(cost_usd)
        if not priced:
            self._child(self.unpriced_calls, provider).inc()

    def key_health_transition(self, provider: str, from_state: str, to_state: str) -> None:
        """A byok call moved a key's health from ``from_state`` to ``to_state``."""
        self._child(self.key_health_transitions, provider, from_state, to_state).inc()

    def database_up(self, up: bool) -> None:
        """The health check's latest answer about the database."""
        self.database.set(1 if up else 0)

    def serve(self, address: str) -> None:
        """Expose ``/metrics`` over HTTP on ``host:port`` (a daemon thread)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)
