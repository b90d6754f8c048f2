"""Provider adapters: one module per upstream API behind ``inference.ports``.

``facts`` (precedence, titles, key prefixes, dashboards: pure data any layer may
read), ``sdk_clients`` (one SDK client per endpoint, the tenant's key per
request), ``direct_client`` (the shared pool's httpx2 client, each request
straight to the transport), ``transport`` (httpx2 on aiohttp, the peer-address
guard), and failure handling in three steps: ``classify`` (SDK exceptions to
plain facts), ``failures`` (the pure table from facts to a failure kind) and
``wording`` / ``azure_wording`` (what to tell the tenant). ``registry`` builds
the adapters.
"""
