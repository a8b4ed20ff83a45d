"""The client's address behind trusted proxies: ``X-Forwarded-For`` read from the right, believed only from a proxy."""
from __future__ import annotations

import pytest

from connectors.api.client_address import TrustedProxies
from leadflow.errors import ConfigError
from streams.settings import Settings

PROXIES = TrustedProxies.parse("10.0.0.0/8, 192.0.2.7, 2001:db8:ff::/48")


@pytest.mark.parametrize(("peer", "forwarded_for", "client"), [
    # No proxy in between: the header is the client's own writing, whatever it says.
    ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
    ("192.0.2.8", ["198.51.100.1"], "192.0.2.8"),  # next to a trusted address, not one
    # From a proxy: the address it appended.
    ("10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
    ("192.0.2.7", ["203.0.113.7"], "203.0.113.7"),
    ("10.0.0.5", [], "10.0.0.5"),  # a proxy's own request (a health check)
    # What the client wrote before the proxy appended its peer is not believed.
    ("10.0.0.5", ["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
    ("10.0.0.5", ["198.51.100.1", "203.0.113.7"], "203.0.113.7"),  # the same, as two header lines
    # Through two proxies: past every trusted address to the first that is not one.
    ("10.0.0.5", ["198.51.100.1, 203.0.113.7, 10.1.2.3"], "203.0.113.7"),
    ("10.0.0.5", ["10.9.9.9, 10.1.2.3"], "10.9.9.9"),  # all trusted: the left-most
    # An entry that is no address ends the walk at the last address a proxy vouched for.
    ("10.0.0.5", ["203.0.113.7, unknown"], "10.0.0.5"),
    ("10.0.0.5", ["unknown, 203.0.113.7"], "203.0.113.7"),
    ("10.0.0.5", ["203.0.113.7, , 10.1.2.3"], "203.0.113.7"),  # an empty entry is nothing
    # The forms proxies write: with a port, IPv6 in brackets; an IPv4 peer seen by a dual-stack socket.
    ("10.0.0.5", ["203.0.113.7:51234"], "203.0.113.7"),
    ("10.0.0.5", ["[2001:db8::7]:443"], "2001:db8::7"),
    ("::ffff:10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
    ("2001:db8:ff::1", ["2001:db8:1::7"], "2001:db8:1::7"),
    ("2001:db8:1::1", ["203.0.113.7"], "2001:db8:1::1"),
    # Not an IP peer (a unix socket): as it is.
    ("unix", ["203.0.113.7"], "unix"),
    (None, ["203.0.113.7"], None),
])
def test_the_client_is_the_right_most_address_no_trusted_proxy_wrote(
        peer: str | None, forwarded_for: list[str], client: str | None) -> None:
    assert PROXIES.client(peer, forwarded_for) == client


def test_trusting_nobody_believes_no_header() -> None:
    nobody = TrustedProxies.parse("")
    assert not nobody and nobody.client("10.0.0.5", ["203.0.113.7"]) == "10.0.0.5"


@pytest.mark.parametrize(("value", "says"), [
    ("10.0.0.0/8,nope", "'nope' is not an IP address or network"),
    ("10.0.0.1/8", "'10.0.0.1/8' has host bits set: write the network (10.0.0.0/8) or the address alone"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or network"),
    ("lb.example", "'lb.example' is not an IP address or network"),
])
def test_a_bad_entry_stops_the_worker_naming_the_variable_and_the_entry(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"LEADFLOW_TRUSTED_PROXIES": value})
    assert str(refused.value).startswith(f"environment variable LEADFLOW_TRUSTED_PROXIES: {says}")


def test_the_setting_is_read_and_empty_by_default() -> None:
    assert not Settings.from_env({}).trusted_proxies
    read = Settings.from_env({"LEADFLOW_TRUSTED_PROXIES": " 10.0.0.0/8 ,192.0.2.7,2001:db8:ff::/48,"})
    assert read.trusted_proxies == PROXIES


@pytest.mark.parametrize(("entry", "read_as"), [
    ("::ffff:10.0.0.5", "10.0.0.5/32"),
    ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ("::ffff:0:0/96", "0.0.0.0/0"),
    ("2001:db8::/32", "2001:db8::/32"),  # not a mapped one: as written
])
def test_an_ipv4_mapped_entry_trusts_the_ipv4_peer_it_maps(entry: str, read_as: str) -> None:
    """Review s17-a B1: an entry copied from a dual-stack socket's log (``::ffff:10.0.0.5``) was
    accepted and never matched, peers being compared in their IPv4 form: it trusted nobody."""
    proxies = TrustedProxies.parse(entry)
    assert [str(n) for n in proxies.networks] == [read_as]
    if read_as != "2001:db8::/32":
        for peer in ("::ffff:10.0.0.5", "10.0.0.5"):
            assert proxies.client(peer, ["203.0.113.7"]) == "203.0.113.7", peer
