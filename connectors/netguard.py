"""Refuse outbound requests to destinations a tenant must not reach (SSRF guard)."""
from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from leadflow.errors import PermanentError, TransientError

__all__ = [
    "DestinationRefused",
    "DestinationUnresolved",
    "GuardedResolver",
    "Resolver",
    "address_refusal",
    "check_destination",
    "system_resolve",
    "validate_webhook_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolve ``(host, port)`` to the IP address strings a connection could reach.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SCHEMES: Final = frozenset({"http", "https"})
# NAT64 gateways translate this prefix to the embedded IPv4 address, so 64:ff9b::a00:1 is 10.0.0.1.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
# Special-purpose blocks that older Pythons' ipaddress tables call global (fixed for 192.0.0.0/24
# in 3.11.10 and 3.12.4, CVE-2024-4032): IETF protocol assignments, the deprecated 6to4 relay
# anycast. No webhook receiver lives there.
_SPECIAL: Final = tuple(ipaddress.ip_network(n) for n in ("192.0.0.0/24", "192.88.99.0/24"))
# Punycode has already been applied (raw_host), so a real host name is only these characters.
_HOSTNAME: Final = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
# No real TLD is numeric or hex, so such a name is a legacy IPv4 form (127.1, 2130706433, 0x7f.1)
# that getaddrinfo would happily map onto an address.
_NUMERIC_LABEL: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class DestinationRefused(PermanentError):
    """The URL points somewhere leadflow will not send requests to; retrying cannot help."""


class DestinationUnresolved(TransientError):
    """The host name could not be resolved right now (DNS failure or timeout)."""


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve with the OS resolver off the event loop (``loop.getaddrinfo`` runs in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def address_refusal(address: str) -> str | None:
    """Why ``address`` is not a public destination (e.g. ``"loopback"``), or None if it is."""
    try:
        ip: IPAddress = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        # Look through IPv6 forms that carry an IPv4 address the stack will actually reach.
        # (Python < 3.13 does not do this itself: ::ffff:127.0.0.1 is not "loopback" there.)
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        # Catches the rest of the special-purpose registry, e.g. 100.64.0.0/10 (carrier NAT).
        ("non-public", not ip.is_global or any(ip in net for net in _SPECIAL)),
    )
    return next((name for name, hit in checks if hit), None)


def _host(url: URL) -> str:
    """The host as the HTTP client will connect to it: punycode, no trailing dot."""
    return (url.raw_host or "").rstrip(".").lower()


def _static_problem(url: URL, *, allow_private: bool) -> str | None:
    """Everything wrong with ``url`` that is visible without DNS."""
    if url.scheme not in _SCHEMES:
        return f"URL scheme must be http or https, not {url.scheme or 'missing'!r}"
    host = _host(url)
    if not host:
        return "URL has no host"
    if url.raw_user is not None or url.raw_password is not None:
        return "URL must not contain credentials (user:password@); authenticate with the signature"
    literal = _literal_ip(host)
    if literal is None:
        if not _HOSTNAME.match(host):
            return f"URL host {host!r} is not a valid host name"
        if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            return f"URL host {host!r} is not a canonical IP address"
        if not allow_private and (host == "localhost" or host.endswith(".localhost")):
            return f"URL host {host!r} is a loopback name, which is not allowed"
    elif not allow_private and (kind := address_refusal(literal)) is not None:
        return f"URL host {literal} is a {kind} address, which is not allowed"
    return None


def _literal_ip(host: str) -> str | None:
    """``host`` if it is an IP literal (yarl has already removed IPv6 brackets), else None."""
    try:
        ipaddress.ip_address(host.replace("%25", "%"))
    except ValueError:
        return None
    return host.replace("%25", "%")


def validate_webhook_url(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook destination, or None; for config/API time (no DNS)."""
    try:
        parsed = URL(url)
        _ = parsed.host  # yarl decodes IDNA lazily: a malformed punycode label fails only here
    except (ValueError, TypeError, UnicodeError) as exc:
        return f"not a valid URL: {exc}"
    return _static_problem(parsed, allow_private=allow_private)


async def check_destination(
    url: str | URL,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolve,
    resolve_timeout_s: float = 5.0,
) -> None:
    """Raise ``DestinationRefused`` unless every address ``url``'s host resolves to is allowed.

    Checking *every* address matters: a name with one public and one private record would
    otherwise reach the private one whenever the client happens to pick it. This check happens
    before connecting; pair it with ``GuardedResolver`` on the session to close the window in
    which DNS could answer differently at connect time (DNS rebinding).
    Raises ``DestinationUnresolved`` (transient) when DNS fails or times out.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        _ = parsed.host  # yarl decodes IDNA lazily: a malformed punycode label fails only here
    except (ValueError, TypeError, UnicodeError) as exc:
        # Not the parser's message: it may quote the URL, and this text reaches logs.
        raise DestinationRefused("not a valid URL") from exc
    if (problem := _static_problem(parsed, allow_private=allow_private)) is not None:
        raise DestinationRefused(problem)
    host = _host(parsed)
    if allow_private or _literal_ip(host) is not None:
        return  # literals were judged above; with allow_private there is nothing DNS could change
    try:
        async with asyncio.timeout(resolve_timeout_s):
            addresses = await resolver(host, parsed.port or 0)
    except TimeoutError as exc:
        raise DestinationUnresolved(f"resolving {host!r} timed out after {resolve_timeout_s}s") from exc
    except OSError as exc:  # socket.gaierror and friends
        raise DestinationUnresolved(f"could not resolve {host!r}: {exc}") from exc
    if not addresses:
        raise DestinationUnresolved(f"{host!r} resolved to no addresses")
    _refuse_any(host, addresses)


def _refuse_any(host: str, addresses: Sequence[str]) -> None:
    for address in addresses:
        if (kind := address_refusal(address)) is not None:
            raise DestinationRefused(
                f"host {host!r} resolves to {address}, a {kind} address, which is not allowed"
            )


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses non-public addresses at connect time.

    Build the process's session with ``aiohttp.TCPConnector(resolver=GuardedResolver())`` so
    the addresses actually connected to are the ones that were checked. aiohttp does not call
    the resolver for IP literals; ``check_destination`` judges those. ``DestinationRefused``
    propagates out of the request unchanged (aiohttp only wraps ``OSError``).
    """

    def __init__(self, *, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        # ThreadedResolver binds the running loop, so it is created on first use, not here.
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            _refuse_any(host, [result["host"] for result in results])
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
