"""Where the server may send requests on someone's behalf (outbound policy).

Queue deliveries to apps, graph ``http_request`` nodes and workflow code in a sandbox all
make requests to addresses that someone else configured. A policy says which are allowed:

- ``allow`` holds host patterns: ``api.example.com``, ``*.example.com`` (any subdomain),
  ``example.com:8443`` (one port), an IP address or a CIDR range (``10.1.0.0/16``),
  ``localhost``, or ``*`` (any host). A URL must match one, by name or by address.
- Every address a name resolves to is checked again before connecting (so DNS cannot
  point an allowed name somewhere else): loopback, private, link-local and other
  special-purpose addresses pass only when a pattern names them explicitly (an IP,
  a CIDR, ``localhost``), never through a name or ``*``; cloud metadata addresses only
  when listed as exact IPs; ``deny`` (the worker's own addresses, say) always wins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from compute_worker.domain.errors import DomainError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[str] = frozenset(
    {"169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"}
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class OutboundRefused(DomainError):
    """A request to an address the outbound policy does not allow."""

    code = "outbound_refused"


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # lower-case, without brackets
    port: int


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    host: str | None = None  # exact name
    suffix: str | None = None  # "*.example.com" → ".example.com"
    network: IpNetwork | None = None
    port: int | None = None
    any_host: bool = False


def _parse_pattern(text: str) -> _Pattern:
    raw = text.strip().lower()
    if not raw:
        raise ValueError("an empty outbound pattern")
    if raw == "*":
        return _Pattern(text, any_host=True)
    host, port = raw, None
    if raw.startswith("["):  # [v6]:port
        close = raw.find("]")
        if close < 0:
            raise ValueError(f"invalid outbound pattern {text!r}")
        host, rest = raw[1:close], raw[close + 1 :]
        port = _port(rest[1:], text) if rest.startswith(":") else None
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        port = _port(port_text, text)
    try:
        return _Pattern(text, network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    if host.startswith("*."):
        return _Pattern(text, suffix=host[1:], port=port)
    if "*" in host or "/" in host or not host:
        raise ValueError(f"invalid outbound pattern {text!r}")
    return _Pattern(text, host=host.rstrip("."), port=port)


def _port(text: str, pattern: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port in outbound pattern {pattern!r}")
    return int(text)


class OutboundPolicy:
    def __init__(
        self, allow: tuple[str, ...] = (), deny: tuple[str, ...] = (), what: str = "outbound"
    ) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        self.what = what  # named in refusals: "queue delivery", "http_request", …
        self._allow = tuple(_parse_pattern(p) for p in allow)
        self._deny = tuple(_parse_pattern(p) for p in deny)

    @property
    def closed(self) -> bool:
        return not self._allow

    def check_url(self, url: str) -> Target:
        """The URL's target when some pattern allows its host (by name or as a literal
        address); ``OutboundRefused`` otherwise. Then check each resolved address."""
        target = parse_target(url)
        if not any(self._names(p, target) for p in self._allow):
            raise self._refuse(f"{target.host}:{target.port} is not in the allow-list")
        return target

    def check_literal(self, url: str) -> Target:
        """``check_url``, and ``check_address`` when the host is an address or a loopback
        name already: what can be told of a URL without resolving it (an upload check)."""
        target = self.check_url(url)
        literal = _literal(target.host)
        if literal is not None:
            self.check_address(target, str(literal))
        elif target.host in _LOOPBACK_NAMES:
            self.check_address(target, "127.0.0.1")
        return target

    def check_address(self, target: Target, address: str) -> None:
        """Refuse connecting to ``address``, one that ``target.host`` resolved to."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(self._covers(p, target, ip) for p in self._deny):
            raise self._refuse(f"{target.host} ({ip}) is one of the worker's own addresses")
        if not any(self._names(p, target) for p in self._allow):
            raise self._refuse(f"{target.host}:{target.port} is not in the allow-list")
        named = [p for p in self._allow if self._covers(p, target, ip)]
        if str(ip) in METADATA_ADDRESSES and not any(
            p.network is not None and p.network.num_addresses == 1 for p in named
        ):
            raise self._refuse(f"{ip} is a cloud metadata address")
        if _special(ip) and not named:
            raise self._refuse(
                f"{target.host} resolves to {ip}, a loopback, private or reserved address; "
                "allow it by IP, CIDR or 'localhost' to reach it"
            )

    @staticmethod
    def _names(pattern: _Pattern, target: Target) -> bool:
        """Does ``pattern`` allow the URL's host and port, before any resolution?"""
        if pattern.port is not None and pattern.port != target.port:
            return False
        literal = _literal(target.host)
        if pattern.any_host:
            return True
        if pattern.network is not None:
            return literal is not None and literal in pattern.network
        if pattern.host in _LOOPBACK_NAMES:
            return target.host in _LOOPBACK_NAMES or (literal is not None and literal.is_loopback)
        if pattern.suffix is not None:
            return target.host.endswith(pattern.suffix)
        return target.host == pattern.host

    @staticmethod
    def _covers(pattern: _Pattern, target: Target, ip: IpAddress) -> bool:
        """Does ``pattern`` name the address ``ip`` itself (IP, CIDR, localhost)?"""
        if pattern.port is not None and pattern.port != target.port:
            return False
        if pattern.network is not None:
            return ip in pattern.network
        if pattern.host in _LOOPBACK_NAMES:
            return ip.is_loopback
        return pattern.host is not None and pattern.host == target.host == str(ip)

    def _refuse(self, why: str) -> OutboundRefused:
        return OutboundRefused(
            f"{self.what} refused: {why}", {"allowed": list(self.allow) or "nothing"}
        )


def parse_target(url: str) -> Target:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"not a valid URL: {url[:200]!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundRefused(f"only http and https URLs may be called, not {url[:200]!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise OutboundRefused(f"the URL has no host: {url[:200]!r}")
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _special(ip: IpAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _special(ip.ipv4_mapped)
    return not ip.is_global or ip.is_multicast
