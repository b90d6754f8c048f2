"""The Azure endpoint policy: where a tenant's Azure key may be sent.

An Azure endpoint is tenant input and the place the tenant's key goes, so it
is checked twice: its URL when the config is saved and again before each call
(``EndpointPolicy.check``: https, a host on Azure OpenAI's domains or the
operator's allowlist, no IP literal, no user-info, query, fragment or path),
and the addresses its name resolves to when the transport connects
(``EndpointPolicy.allows_address``: public unicast addresses only, IPv6 forms
that embed an IPv4 address judged by that address; any address when the
operator allowed private ones for Azure Private Link; loopback as well, and
nothing more, when development allowed loopback http). One frozen object
built from ``Settings`` holds both rules.

Pure code (``ipaddress``, ``urllib.parse``): any layer may import it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from liya_engine.errors import FieldViolation

if TYPE_CHECKING:
    from liya_engine.settings import Settings

AZURE_HOST_SUFFIXES = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
    ".openai.azure.us",
    ".openai.azure.cn",
)
MAX_ENDPOINT_CHARS = 512
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Anything a URL parser may silently drop or a client may refuse.
_URL_FORBIDDEN = re.compile(r"[^\x21-\x7e]")
_EXAMPLE = "must be a URL such as https://your-resource.openai.azure.com"


# IPv6 ranges that carry an IPv4 address in their last 32 bits: a connection
# to one reaches (through a translator or a tunnel) the IPv4 address, so that
# address is what is judged. Teredo (2001::/32) is handled by ``ipaddress``.
_EMBEDDING_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, RFC 4291)
)
# IPv6 ranges ``ipaddress`` counts as global that are not: site-local (RFC
# 3879, deprecated but still routed by some stacks) and NAT64 local-use (RFC 8215).
_NOT_GLOBAL_V6 = (
    ipaddress.IPv6Network("fec0::/10"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


def _judged(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a connection to ``ip`` really reaches: the IPv4 address an
    IPv6 form embeds (mapped, 6to4, Teredo's client, NAT64, IPv4-compatible), else ``ip``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client, stored inverted in the last 32 bits
    if int(ip) > 1 and any(ip in net for net in _EMBEDDING_IPV4):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return _judged(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return None


def is_public_address(address: str) -> bool:
    """Whether ``address`` is a globally routable unicast IP address, IPv6 forms
    that embed an IPv4 address judged by that address."""
    ip = _address(address)
    if ip is None or ip.is_multicast or not ip.is_global:
        return False
    return not (isinstance(ip, ipaddress.IPv6Address) and any(ip in n for n in _NOT_GLOBAL_V6))


def is_loopback_address(address: str) -> bool:
    """Whether ``address`` is a loopback address (in any IPv6 form embedding one)."""
    ip = _address(address)
    return ip is not None and ip.is_loopback


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells (brackets and zone allowed), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """Whether ``host`` is on the operator's allowlist: an exact host, or a
    domain written with a leading dot that covers its subdomains."""
    for entry in allowlist:
        entry = entry.lower()
        if (entry.startswith(".") and host.endswith(entry)) or host == entry:
            return True
    return False


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """Which Azure endpoints and peer addresses this service sends keys to.

    ``allowlist``: hosts beyond Azure's own domains (``LIYA_AZURE_ENDPOINT_ALLOWLIST``);
    ``allow_insecure``: loopback ``http`` endpoints, for development
    (``LIYA_ALLOW_INSECURE_ENDPOINTS``); ``allow_private_addresses``: names
    resolving to private addresses, for Azure Private Link
    (``LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES``).
    """

    allowlist: tuple[str, ...] = ()
    allow_insecure: bool = False
    allow_private_addresses: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EndpointPolicy:
        """The policy the operator's settings describe."""
        return cls(
            allowlist=settings.azure_endpoint_allowlist,
            allow_insecure=settings.allow_insecure_endpoints,
            allow_private_addresses=settings.azure_allow_private_addresses,
        )

    @property
    def public_peers_only(self) -> bool:
        """Whether only public peer addresses are allowed (no development or
        Private Link setting widens the rule)."""
        return not (self.allow_insecure or self.allow_private_addresses)

    @property
    def checks_addresses(self) -> bool:
        """Whether the transport must check peer addresses at all: always,
        unless the operator allowed private ones (Private Link)."""
        return not self.allow_private_addresses

    def allows_address(self, address: str) -> bool:
        """Whether the transport may connect to the IP ``address``: a public
        one; a loopback one too under the development setting, nothing else."""
        if self.allow_private_addresses or is_public_address(address):
            return True
        return self.allow_insecure and is_loopback_address(address)

    def check(self, path: str, value: str) -> list[FieldViolation]:
        """The violations of endpoint ``value`` (named ``path``); empty when allowed."""
        why = self._problem(value)
        return [FieldViolation(path, why)] if why else []

    def _problem(self, value: str) -> str:
        if len(value) > MAX_ENDPOINT_CHARS:
            return f"must be at most {MAX_ENDPOINT_CHARS} characters"
        if _URL_FORBIDDEN.search(value):
            # urlsplit drops tabs and line breaks, so the host it checks would not
            # be the one the stored value names.
            return "must not contain spaces, control or non-ASCII characters"
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            return _EXAMPLE
        host = (parts.hostname or "").lower()
        return _EXAMPLE if not host else self._url_problem(value, parts, host, port)

    def _url_problem(self, value: str, parts: SplitResult, host: str, port: int | None) -> str:
        if parts.username is not None or parts.password is not None:
            return "must not contain user information"
        if parts.query or parts.fragment or "?" in value or "#" in value:
            return "must not have a query or fragment"
        if parts.path not in ("", "/"):
            return (
                "must be the resource's base URL, with no path "
                "(the deployment goes in deployment_name)"
            )
        ip = ip_literal(host)
        loopback = host == "localhost" or (ip is not None and ip.is_loopback)
        if self.allow_insecure and loopback and parts.scheme in ("http", "https"):
            return ""
        if parts.scheme != "https":
            return "must use https"
        if ip is not None:
            return "must be a host name, not an IP address"
        if not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
            return "must have a valid host name"
        if port not in (None, 443):
            return "must not name a port other than 443"
        if host.endswith(AZURE_HOST_SUFFIXES) or host_allowed(host, self.allowlist):
            return ""
        return (
            "must be an Azure OpenAI host such as https://your-resource.openai.azure.com "
            "(ask the operator to allow other hosts)"
        )
