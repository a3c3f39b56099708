"""The outbound policy (domain/outbound.py): which URLs and resolved addresses the server
may reach on someone's behalf."""

from __future__ import annotations

import pytest

from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused


def allowed(policy: OutboundPolicy, url: str, address: str) -> bool:
    try:
        policy.check_address(policy.check_url(url), address)
    except OutboundRefused:
        return False
    return True


def test_an_empty_policy_allows_nothing() -> None:
    policy = OutboundPolicy()
    assert policy.closed
    with pytest.raises(OutboundRefused, match="not in the allow-list"):
        policy.check_url("https://example.com/")


@pytest.mark.parametrize(
    ("url", "address", "expected"),
    [
        ("https://api.example.com/x", "93.184.216.34", True),
        ("https://api.example.com:8443/x", "93.184.216.34", False),  # another port
        ("https://example.com/", "93.184.216.34", False),
        ("https://eu.hooks.example.org/", "93.184.216.35", True),  # *.example.org
        ("https://example.org/", "93.184.216.35", False),  # the apex is not a subdomain
        ("http://10.1.2.3/", "10.1.2.3", True),  # CIDR names private addresses
        ("http://10.2.0.1/", "10.2.0.1", False),
    ],
)
def test_patterns_match_names_suffixes_ports_and_ranges(
    url: str, address: str, expected: bool
) -> None:
    policy = OutboundPolicy(("api.example.com:443", "*.example.org", "10.1.0.0/16"))
    assert allowed(policy, url, address) is expected


def test_a_name_never_reaches_a_private_or_loopback_address_unless_named() -> None:
    policy = OutboundPolicy(("*", "api.example.com"))
    assert allowed(policy, "https://api.example.com/", "93.184.216.34")
    for inner in ("127.0.0.1", "10.0.0.7", "192.168.1.1", "::1", "fe80::1", "0.0.0.0",
                  "::ffff:127.0.0.1"):  # fmt: skip
        assert not allowed(policy, "https://api.example.com/", inner), inner
    assert not allowed(policy, "http://127.0.0.1:9/", "127.0.0.1")


def test_localhost_names_the_loopback_addresses() -> None:
    policy = OutboundPolicy(("localhost",))
    assert allowed(policy, "http://localhost:3000/", "127.0.0.1")
    assert allowed(policy, "http://127.0.0.1:3000/", "127.0.0.1")
    assert allowed(policy, "http://[::1]:3000/", "::1")
    assert not allowed(policy, "http://localhost:3000/", "10.0.0.1")  # a poisoned resolver
    assert not allowed(policy, "http://example.com/", "127.0.0.1")


def test_metadata_addresses_need_an_exact_ip() -> None:
    assert not allowed(
        OutboundPolicy(("169.254.0.0/16",)), "http://169.254.169.254/", "169.254.169.254"
    )
    assert allowed(
        OutboundPolicy(("169.254.169.254",)), "http://169.254.169.254/", "169.254.169.254"
    )


def test_deny_wins_over_allow() -> None:
    policy = OutboundPolicy(("localhost",), deny=("127.0.0.1:8080",))
    assert allowed(policy, "http://localhost:3000/", "127.0.0.1")
    assert not allowed(policy, "http://localhost:8080/v1/world/runs/list", "127.0.0.1")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "http://[::1/", "gopher://x"],
)
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(OutboundRefused):
        OutboundPolicy(("*",)).check_url(url)


@pytest.mark.parametrize("pattern", ["", "a*b.com", "host:0", "host:99999", "[::1", "x/y"])
def test_bad_patterns_are_refused_when_the_policy_is_built(pattern: str) -> None:
    with pytest.raises(ValueError):
        OutboundPolicy((pattern,))
