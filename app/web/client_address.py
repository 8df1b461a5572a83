"""Who is on the other end of a connection: the socket's address, unless that is a trusted
reverse proxy (TRUSTED_PROXIES), in which case the address the proxies say they forwarded.

Behind a proxy every request comes from the proxy's address, so per-address limits would
lump all people together; believing the forwarded headers from anyone else would let a
client pick its own address. The header is read from the right: each trusted proxy appends
the address it received from, so the right-most entry that is not a trusted proxy is the
first one no trusted party vouches against."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)', re.I)


def parse_networks(spec: str) -> tuple[Network, ...]:
    """'10.0.0.1, 10.1.0.0/16, ::1' → networks; a bad entry is an error at start-up."""
    networks = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {part!r} is not an address or network")\
                    from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: str, networks: Iterable[Network]) -> bool:
    ip = _address(address)
    return ip is not None and any(ip in net for net in networks)


def forwarded_chain(headers: dict[str, str]) -> list[str]:
    """The addresses the proxies report, client first (RFC 7239 `Forwarded` wins over
    `X-Forwarded-For` when both are present)."""
    forwarded = headers.get("forwarded")
    if forwarded:
        return [m.group(1) for m in _FORWARDED_FOR.finditer(forwarded)]
    xff = headers.get("x-forwarded-for")
    return [a.strip() for a in xff.split(",") if a.strip()] if xff else []


def client_address(scope: Mapping[str, Any], networks: tuple[Network, ...]) -> str:
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not networks or not _trusted(peer, networks):
        return peer
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in scope.get("headers", ())
               if k.lower() in (b"forwarded", b"x-forwarded-for")}
    chain = forwarded_chain(headers)
    for hop in reversed(chain):
        if not _trusted(hop, networks):
            ip = _address(hop)
            return str(ip) if ip is not None else peer
    return str(_address(chain[0])) if chain and _address(chain[0]) else peer


def counting_network(address: str) -> str:
    """What per-address limits count: an IPv4 address, but an IPv6 /64, since one
    subscriber line is usually given a whole /64 and single v6 addresses would count
    nothing."""
    ip = _address(address)
    if ip is None:
        return address
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
