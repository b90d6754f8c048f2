"""Prometheus metrics. Labels are bounded: method, code, reason, provider,
model (from the catalog or the tenant's config, capped) - never a tenant or a key.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_MAX_MODEL_LABELS = 200


class Metrics:
    """The service's counters and histograms, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = Counter(
            "liya_rpc_total", "RPCs handled", ["method", "code", "reason"], registry=self.registry
        )
        self.rpc_latency = Histogram(
            "liya_rpc_duration_seconds",
            "RPC latency",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.provider_calls = Counter(
            "liya_provider_calls_total",
            "Upstream provider calls",
            ["provider", "model", "mode", "reason"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "liya_provider_duration_seconds",
            "Upstream provider call latency",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "liya_tokens_total",
            "Tokens used",
            ["provider", "model", "direction"],
            registry=self.registry,
        )
        self.cost = Counter(
            "liya_cost_usd_total",
            "Cost at catalog prices, USD",
            ["provider", "model"],
            registry=self.registry,
        )
        self.config_cache = Counter(
            "liya_config_cache_total",
            "Tenant config cache lookups",
            ["result"],
            registry=self.registry,
        )
        self._models: set[str] = set()
        self._children: dict[tuple, object] = {}

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

    def rpc_started(self, method: str) -> None:
        """A call of ``method`` (its full path) began; ``rpc_done`` ends it."""

    def rpc_done(self, method: str, code: str, reason: str, seconds: float) -> None:
        self._child(self.rpcs, method, code, reason).inc()
        self._child(self.rpc_latency, method).observe(seconds)

    def provider_call(
        self, provider: str, model: str, mode: str, reason: str, seconds: float
    ) -> None:
        self._child(self.provider_calls, provider, self._model(model), mode, reason or "OK").inc()
        self._child(self.provider_latency, provider).observe(seconds)

    def usage(
        self, provider: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        model = self._model(model)
        self._child(self.tokens, provider, model, "input").inc(input_tokens)
        self._child(self.tokens, provider, model, "output").inc(output_tokens)
        self._child(self.cost, provider, model).inc(cost_usd)

    def serve(self, address: str) -> None:
        """Expose ``/metrics`` over HTTP on ``host:port`` (a daemon thread)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)
