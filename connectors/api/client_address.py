"""Who the client is: the connection's peer, or, when that peer is a trusted proxy, the address it forwarded.

Behind a load balancer or reverse proxy every connection comes from the proxy, so whatever the
API keys by client address (the failed-authentication block) would lump every client behind it
together: one guesser would block them all. ``LEADFLOW_TRUSTED_PROXIES`` names the proxies
(addresses and networks); a request whose peer is one of them is taken to come from the address
in ``X-Forwarded-For`` that the proxies vouch for, read the way nginx's ``real_ip_recursive on``
reads it: from the right, past every address that is itself a trusted proxy, to the first that
is not. Each proxy appends the address it was connected from, so the entries right of that one
were written by proxies we trust; everything left of it came from the client and is ignored.

aiohttp-remotes was considered and does not fit: ``XForwardedFiltered`` applies the header
whoever the peer is (a direct client spoofs any address), ``XForwardedStrict`` answers 400 to a
request with another hop count than configured (health checks and direct calls that skip the
proxy), and ``XForwardedRelaxed`` trusts a hop count without checking any address.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TrustedProxies", "FORWARDED_FOR"]

FORWARDED_FOR = "X-Forwarded-For"

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> _Address | None:
    """An address as a peer or a proxy writes it (``203.0.113.7``, ``203.0.113.7:5123``,
    ``[2001:db8::7]:5123``, ``::ffff:203.0.113.7``); ``None`` for anything else (``unknown``,
    an obfuscated identifier, a unix socket)."""
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port (a bare v6 has two colons or more)
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 peer
        return ip.ipv4_mapped
    return ip


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(network: _Network) -> _Network:
    """An IPv4-mapped IPv6 network as the IPv4 network it maps; any other as it is."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed; none (the default): the peer is the client."""

    networks: tuple[_Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """``10.0.0.0/8, 192.0.2.7, 2001:db8::/32``: comma-separated addresses and networks.

        ``ValueError`` naming the first entry that is neither, or a network written with host bits
        (``10.0.0.1/8``: which was meant, the host or the network, is for the operator to say).

        An IPv4-mapped entry (``::ffff:10.0.0.5``, ``::ffff:10.0.0.0/104``: as a dual-stack socket
        logs an IPv4 peer) is read as its IPv4 form (``10.0.0.5``, ``10.0.0.0/8``): peers are
        compared in that form (``_address``), so it would otherwise never match (review s17-a B1).
        """
        networks: list[_Network] = []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(_unmapped(ipaddress.ip_network(entry)))
            except ValueError as exc:
                if "host bits set" in str(exc):
                    network = ipaddress.ip_network(entry, strict=False)
                    raise ValueError(f"{entry!r} has host bits set: write the network ({network}) or the "
                                     f"address alone") from None
                raise ValueError(f"{entry!r} is not an IP address or network (expected e.g. 10.0.0.0/8, "
                                 "192.0.2.7 or 2001:db8::/32)") from None
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: _Address) -> bool:
        return any(address.version == network.version and address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The client's address: ``peer`` unless it is a trusted proxy, else the right-most address
        in the ``X-Forwarded-For`` headers (``forwarded_for``, in the order received) that is not one.

        All of them trusted: the left-most. An entry that is no address (``unknown``) ends the
        walk at the last address a trusted proxy vouched for: never an address the client wrote.
        ``None`` when ``peer`` is ``None``.
        """
        ip = _address(peer or "")
        if ip is None or not self.trusts(ip):
            return peer
        hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            forwarded = _address(hop)
            if forwarded is None:
                break
            ip = forwarded
            if not self.trusts(ip):
                break
        return str(ip)
