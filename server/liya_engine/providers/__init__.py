"""Provider adapters: one module per upstream API behind ``inference.ports.ProviderAdapter``.

What lives here: the SDK-backed adapters (``openai_adapter``,
``anthropic_adapter``, ``azure_adapter`` on ``sdk_clients``), the HTTP
transport under them (``transport``), provider facts (``facts``), and failure
handling in three parts: facts from SDK exceptions (``classify``), the pure
decision tables (``failures``) and each provider's wording (``wording``,
``azure_wording``). This package may import the SDKs, httpx2 and aiohttp and
the domain's ports and policies; of this package the domain imports only
``facts``, which is pure data.
"""
