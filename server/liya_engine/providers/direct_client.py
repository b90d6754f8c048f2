"""The shared pool's ``httpx2.AsyncClient``: each request straight to the transport.

httpx2's ``AsyncClient.send`` runs a request through an auth flow, a redirect
loop, request and response hooks, a cookie jar and a log line, each an async
generator, a loop or a context of its own, on every call: without them a
provider call, timed alone in one process, takes 3-4% less CPU. The pool the
SDKs share needs none of it:

- the SDKs authenticate with headers they build themselves; an httpx2
  ``Auth`` (the SDKs pass one only for identity-based credentials, which
  this service does not use) is refused with ``TypeError``, not ignored;
- redirects are never followed, whatever a caller asks: an endpoint that
  redirects must not get the chance to forward the key elsewhere, so a 3xx
  comes back as the answer it is;
- it runs no event hooks: the one an SDK adds (Azure's removes the ``api-key``
  header from a request redirected to another origin) has nothing to do when
  no redirect is followed;
- it keeps no cookies: one tenant's must not travel with another tenant's
  calls (the transport's aiohttp session keeps none either);
- it logs nothing per call (httpx2's line would quote tenants' Azure URLs).

What ``send`` keeps is httpx2's behaviour the SDKs rely on: the client's
timeout for a request that has none, ``response.request`` and a transport
error's ``request``, the body read unless the caller streams, the response
closed when reading it fails, and ``response.elapsed`` (the transport's body
stream keeps it). Building requests (``build_request``), the client's
lifecycle and its transport are httpx2's unchanged.
"""

from __future__ import annotations

from typing import Any

import httpx2


class DirectClient(httpx2.AsyncClient):
    """``httpx2.AsyncClient`` whose ``send`` hands a request to its one transport.

    Built like any ``httpx2.AsyncClient``, with a ``transport`` (required); it
    must not be given ``mounts``, ``proxy`` or ``auth`` (the transport does
    proxies), nor ``follow_redirects=True``.
    """

    def __init__(self, *, transport: httpx2.AsyncBaseTransport, **kwargs: Any) -> None:
        for option in ("mounts", "proxy", "auth"):
            if kwargs.get(option) is not None:
                raise ValueError(f"DirectClient takes no {option}: its transport does the work")
        if kwargs.get("follow_redirects"):
            raise ValueError("DirectClient never follows redirects")
        super().__init__(transport=transport, **kwargs)
        self._direct = transport

    async def send(
        self,
        request: httpx2.Request,
        *,
        stream: bool = False,
        auth: Any = httpx2.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx2.USE_CLIENT_DEFAULT,
    ) -> httpx2.Response:
        """Send ``request`` as it is and return the answer, read unless ``stream``.

        ``follow_redirects`` is accepted for the SDKs' sake and never followed.
        """
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if auth is not None and auth is not httpx2.USE_CLIENT_DEFAULT:
            raise TypeError("DirectClient sends no httpx2 auth: put credentials in the headers")
        if "timeout" not in request.extensions:
            request.extensions = {**request.extensions, "timeout": self.timeout.as_dict()}
        try:
            response = await self._direct.handle_async_request(request)
        except httpx2.RequestError as exc:
            exc.request = request  # as httpx2's client does, for the SDKs' messages
            raise
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response
