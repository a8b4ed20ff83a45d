"""Tests for the SSRF guard: URL checks, address classification, DNS checks, the guarded resolver."""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from connectors.netguard import (
    DestinationRefused,
    DestinationUnresolved,
    GuardedResolver,
    Resolver,
    address_refusal,
    check_destination,
    system_resolve,
    validate_webhook_url,
)
from leadflow.errors import PermanentError, TransientError

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700:4700::1111"


def resolving_to(*addresses: str) -> tuple[Resolver, list[tuple[str, int]]]:
    """A resolver answering ``addresses`` for any name, and the calls it received."""
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        return list(addresses)

    return resolve, calls


async def must_not_resolve(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"DNS must not be consulted for {host}:{port}")


class StaticResolver(AbstractResolver):
    """An aiohttp resolver that answers one address for every name."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": self.address, "port": port, "family": family, "proto": 0, "flags": 0}
        ]

    async def close(self) -> None:
        self.closed = True


NON_PUBLIC_LITERALS = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10:8080/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://100.64.0.1/", "non-public"),
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 of 10.0.0.1
    ("http://[2002:a9fe:a9fe::]/", "link-local"),  # 6to4 of 169.254.169.254
    # Called global by Python < 3.11.10's tables (CVE-2024-4032): refused whatever the Python.
    ("http://192.0.0.8/", "non-public"),
    ("http://192.88.99.1/", "non-public"),
    ("http://[64:ff9b:1::a00:1]/", "reserved"),  # local-use NAT64 (RFC 8215)
]


@pytest.mark.parametrize(("url", "kind"), NON_PUBLIC_LITERALS)
async def test_check_destination_refuses_non_public_literals(url: str, kind: str) -> None:
    with pytest.raises(DestinationRefused, match=f"a {kind} address") as caught:
        await check_destination(url, allow_private=False, resolver=must_not_resolve)
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(("url", "kind"), NON_PUBLIC_LITERALS)
async def test_check_destination_allows_non_public_literals_when_allowed(url: str, kind: str) -> None:
    await check_destination(url, allow_private=True, resolver=must_not_resolve)


@pytest.mark.parametrize("url", [f"https://{PUBLIC_V4}/hook", f"http://[{PUBLIC_V6}]:8443/"])
async def test_check_destination_allows_public_literals_without_dns(url: str) -> None:
    await check_destination(url, allow_private=False, resolver=must_not_resolve)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://files.example.com/x", "scheme must be http or https, not 'ftp'"),
        ("file:///etc/passwd", "scheme must be http or https, not 'file'"),
        ("gopher://example.com:70/", "scheme"),
        ("//example.com/hook", "not 'missing'"),
        ("http:///hook", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("http://2130706433/", "not a canonical IP address"),
        ("http://127.1/", "not a canonical IP address"),
        ("http://0x7f.0.0.1/", "not a canonical IP address"),
        ("http://exa mple.com/", "not a valid host name"),
        ("http://[::1/", "not a valid URL"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_check_destination_refuses_malformed_urls(url: str, reason: str, allow_private: bool) -> None:
    with pytest.raises(DestinationRefused, match=reason):
        await check_destination(url, allow_private=allow_private, resolver=must_not_resolve)


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.5"], [PUBLIC_V4, "10.0.0.5"], ["::ffff:127.0.0.1"], [PUBLIC_V6, "fe80::1%eth0"]],
)
async def test_check_destination_refuses_a_name_if_any_address_is_non_public(addresses: list[str]) -> None:
    resolver, _ = resolving_to(*addresses)
    with pytest.raises(DestinationRefused, match=r"host 'hooks\.example\.com' resolves to .*not allowed"):
        await check_destination("https://hooks.example.com/x", allow_private=False, resolver=resolver)


async def test_check_destination_resolves_the_connect_host_and_port() -> None:
    resolver, calls = resolving_to(PUBLIC_V4, PUBLIC_V6)
    await check_destination("https://Hooks.Exämple.com./in?token=t", allow_private=False, resolver=resolver)
    await check_destination("http://hooks.example.com:8080/", allow_private=False, resolver=resolver)
    assert calls == [("hooks.xn--exmple-cua.com", 443), ("hooks.example.com", 8080)]


async def test_check_destination_skips_dns_when_private_is_allowed() -> None:
    await check_destination("http://anything.internal/", allow_private=True, resolver=must_not_resolve)


async def test_check_destination_refuses_loopback_names_without_dns() -> None:
    with pytest.raises(DestinationRefused, match="loopback name"):
        await check_destination("http://api.localhost:8080/", allow_private=False, resolver=must_not_resolve)


async def test_dns_timeout_is_transient() -> None:
    async def hang(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(10)
        return []

    with pytest.raises(DestinationUnresolved, match="timed out after 0.05s") as caught:
        await check_destination("https://slow.example.com/", allow_private=False, resolver=hang, resolve_timeout_s=0.05)
    assert isinstance(caught.value, TransientError)


@pytest.mark.parametrize("addresses", [None, []])
async def test_dns_failure_or_empty_answer_is_transient(addresses: list[str] | None) -> None:
    async def fail(host: str, port: int) -> Sequence[str]:
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addresses

    with pytest.raises(DestinationUnresolved, match="nowhere.example.com"):
        await check_destination("https://nowhere.example.com/", allow_private=False, resolver=fail)


async def test_system_resolve_uses_getaddrinfo() -> None:
    assert set(await system_resolve("127.0.0.1", 80)) == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("url", "allow_private", "problem"),
    [
        ("https://hooks.example.com/leadflow?token=abc", False, None),
        (f"http://{PUBLIC_V4}:8080/", False, None),
        ("http://10.0.0.1/hook", True, None),
        ("http://localhost:9000/", True, None),
        ("ftp://hooks.example.com/", False, "URL scheme must be http or https, not 'ftp'"),
        ("hooks.example.com/path", False, "URL scheme must be http or https, not 'missing'"),
        ("https:///path", False, "URL has no host"),
        ("https://rep:hunter2@hooks.example.com/", False, "URL must not contain credentials"),
        ("https://rep@hooks.example.com/", True, "URL must not contain credentials"),
        ("http://10.0.0.1/hook", False, "URL host 10.0.0.1 is a private address, which is not allowed"),
        ("http://[::1]:8080/", False, "URL host ::1 is a loopback address, which is not allowed"),
        ("http://[::ffff:127.0.0.1]/", False, "is a loopback address"),
        ("http://169.254.169.254/", False, "is a link-local address"),
        ("http://localhost:9000/", False, "URL host 'localhost' is a loopback name, which is not allowed"),
        ("http://127.1/", True, "URL host '127.1' is not a canonical IP address"),
        ("http://bad_host!.com/", False, "is not a valid host name"),
        ("http://example.com:99999/", False, "not a valid URL"),
    ],
)
def test_validate_webhook_url(url: str, allow_private: bool, problem: str | None) -> None:
    message = validate_webhook_url(url, allow_private=allow_private)
    if problem is None:
        assert message is None
    else:
        assert message is not None and problem in message


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        (PUBLIC_V4, None),
        (PUBLIC_V6, None),
        ("127.0.0.1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("192.0.2.1", "private"),  # documentation range
        ("not-an-ip", "not an IP address"),
    ],
)
def test_address_refusal(address: str, kind: str | None) -> None:
    assert address_refusal(address) == kind


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_addresses_are_judged_like_their_ipv4(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert address_refusal(str(mapped)) == address_refusal(str(ip))


async def test_guarded_resolver_refuses_non_public_answers() -> None:
    inner = StaticResolver("10.0.0.7")
    guard = GuardedResolver(inner=inner)
    with pytest.raises(DestinationRefused, match=r"'hooks\.example\.com' resolves to 10\.0\.0\.7, a private"):
        await guard.resolve("hooks.example.com", 443)
    await guard.close()
    assert inner.closed


@pytest.mark.parametrize(("address", "allow_private"), [(PUBLIC_V4, False), ("10.0.0.7", True)])
async def test_guarded_resolver_passes_allowed_answers_through(address: str, allow_private: bool) -> None:
    guard = GuardedResolver(allow_private=allow_private, inner=StaticResolver(address))
    [result] = await guard.resolve("hooks.example.com", 443)
    assert (result["host"], result["port"]) == (address, 443)


async def test_guarded_resolver_defaults_to_the_threaded_resolver() -> None:
    guard = GuardedResolver(allow_private=True)
    results = await guard.resolve("127.0.0.1", 80)
    assert {result["host"] for result in results} == {"127.0.0.1"}
    await guard.close()
    strict = GuardedResolver()
    with pytest.raises(DestinationRefused, match="loopback"):
        await strict.resolve("127.0.0.1", 80)
    await strict.close()


@pytest.mark.parametrize("url", ["http://xn--/hook", "https://XN--/a", "https://a.xn--/b"])
async def test_malformed_punycode_hosts_are_refused_not_crashed(url: str) -> None:
    problem = validate_webhook_url(url, allow_private=True)
    assert problem is not None and "not a valid URL" in problem
    with pytest.raises(DestinationRefused):
        await check_destination(url, allow_private=True)
