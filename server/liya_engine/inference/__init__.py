"""The inference plane: completion calls routed to providers.

``checks`` (the request checked before any I/O), ``plan`` (tenant, provider,
model and credentials for a call), ``cost`` (the cost bound), ``learned``
(the models Azure deployments reported, shared through a port), ``estimate`` (the
one prompt-token estimate), ``latency``, ``values``, ``tenants`` (the cache of
decrypted tenants) and ``service`` (the use cases). ``ports`` holds the
provider shapes the adapters implement. Domain code: no grpc, storage, HTTP
clients or SDKs.
"""
