"""Who the client is: the peer address, or, behind a trusted proxy, what the proxy says.

uvicorn's own X-Forwarded-For handling is switched off (`ragql serve`, api/serving.py): by default
it believes 127.0.0.1, so any local process could pick its own address per request, and a junk
header became the "address". Here the header is read only when the peer is one of
RAGQL_TRUSTED_PROXIES, from the right (the hops our proxies appended), and every hop must parse
as an IP address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A forwarded header longer than this is not read at all (a chain of proxies is a few hops).
MAX_FORWARDED_CHARS = 1024
MAX_HOPS = 16


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def client_address(scope: Scope, trusted: Sequence[Network] = ()) -> str:
    client = scope.get("client")
    peer = _parse(str(client[0])) if client else None
    if peer is None:
        return "unknown"
    if not trusted or not _trusted(peer, trusted):
        return str(peer)
    forwarded = ",".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-forwarded-for")
    if not forwarded or len(forwarded) > MAX_FORWARDED_CHARS:
        return str(peer)
    current = peer
    for hop in reversed(forwarded.split(",")[-MAX_HOPS:]):
        address = _parse(hop)
        if address is None:
            # Junk where an address should be: the last hop we could check is the client.
            return str(current)
        if not _trusted(address, trusted):
            return str(address)
        current = address
    return str(current)
