"""Liya Engine BYOK service: tenants' provider keys kept encrypted, completions
routed by provider, model and cost.

Layers, outermost first (each may import the ones below it, never above):

- ``app`` (wiring), ``cli``, ``workers``: build the pieces and start serving.
- ``api``: the gRPC layer (servicers, per-call guard, the one error mapping).
- ``storage``, ``providers``: adapters that implement the domain's ports
  (SQLAlchemy; the provider SDKs over the aiohttp transport).
- ``config``, ``inference``, ``routing``: domain code, plain async Python; it owns
  its ports (``config.ports``, ``inference.ports``) and imports no grpc,
  SQLAlchemy, HTTP client or SDK.
- Shared leaves: ``errors`` (the one exception tree), ``settings`` (one
  declarative table), ``secret``, ``redact``, ``identity``, ``crypto``,
  ``metrics``, ``logs``, ``providers.facts``.
"""
