"""Who a client is, for rate limits, fair shedding and deny lists: its token's account, else
its address. Pure logic over a few request facts; `client_of()` is the request adapter.

A client is
  * `a:<account id>` when the request's bearer token is one this process already knows to be
    valid (the viewer cache saw it valid within the hour): telling costs no database work;
  * `ip:<address>`: anonymous requests. IPv6 addresses are grouped by /64: one host or one
    subscriber usually holds a whole /64, and keying single addresses would let it rotate
    through 2**64 of them;
  * `ip:<address>#token`: requests with a token not (yet) resolved. One budget per address,
    whatever the token, so minting random tokens buys no fresh budget; apart from the
    address's anonymous one, so that anonymous traffic that spent an address's budget (a
    shared NAT) does not keep a signed-in user behind it from its first request, the one
    that makes its token known.

The address is the peer's, unless the peer is a trusted proxy (setting `trusted_proxies`:
addresses and CIDR ranges, comma-separated). Then the forwarding headers are read right to
left (`Forwarded: for=` when present, else `X-Forwarded-For`), skipping hops that are trusted
proxies themselves; the first untrusted hop is the client. Hops left of it were written by
whoever sent the request and are never believed. An unparseable hop where a trusted proxy
should have written an address (a misconfigured proxy) ends the walk at the last trusted hop.
A peer that is not a trusted proxy can set these headers as it likes: they are ignored.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Client:
    key: str                   # "a:<account id>" or "ip:<address or /64>": one budget each
    address: str               # the client's address as resolved (for deny lists and logs)
    account_id: int | None     # set when the key is the account's


@lru_cache(maxsize=64)
def parse_networks(text: str) -> tuple[Network, ...]:
    """`"10.0.0.0/8, 192.168.1.7, ::1"` -> networks; ValueError names a bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR range") from None
    return tuple(out)


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(addr: Address, trusted: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in trusted)


def _forwarded_for(values: Iterable[str]) -> list[str]:
    """The `for=` of every element of RFC 7239 Forwarded headers, in order. `for="[::1]:80"`
    -> `::1`; `for=1.2.3.4:80` -> `1.2.3.4`; obfuscated and `unknown` nodes are kept as they
    are (they do not parse as addresses)."""
    hops = []
    for value in values:
        for element in value.split(","):
            found = None
            for pair in element.split(";"):
                name, _, v = pair.strip().partition("=")
                if name.strip().lower() == "for":
                    found = v.strip().strip('"')
            if found is None:
                continue
            if found.startswith("["):
                found = found[1:found.find("]")] if "]" in found else found[1:]
            elif found.count(":") == 1:
                found = found.split(":", 1)[0]
            hops.append(found)
    return hops


# A client sends the same peer and forwarding headers request after request: the answer is
# cached (bounded), so that parsing addresses (ipaddress: ~2 us each, three a request behind
# a proxy) is paid once per client, not per request. Headers that vary (made up per request)
# only miss the cache.
def client_address(peer: str | None, forwarded: Iterable[str], x_forwarded_for: Iterable[str],
                   trusted: tuple[Network, ...]) -> str:
    """The client's address as a string (see the module docstring); `-` when unknown."""
    return _client_address(peer, tuple(forwarded), tuple(x_forwarded_for), trusted)


@lru_cache(maxsize=8192)
def _client_address(peer: str | None, forwarded: tuple[str, ...],
                    x_forwarded_for: tuple[str, ...], trusted: tuple[Network, ...]) -> str:
    addr = _address(peer)
    if addr is None:
        return peer or "-"
    if not trusted or not _trusted(addr, trusted):
        return str(addr)
    if forwarded:
        hops = _forwarded_for(forwarded)
    else:
        hops = [h.strip() for v in x_forwarded_for for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        hop_addr = _address(hop)
        if hop_addr is None:
            break  # a trusted proxy should have written an address here: stop at it
        addr = hop_addr
        if not _trusted(hop_addr, trusted):
            break
    return str(addr)


@lru_cache(maxsize=8192)
def address_key(address: str) -> str:
    """The budget an address draws on: itself (IPv4), its /64 (IPv6)."""
    addr = _address(address)
    if addr is not None and addr.version == 6:
        if addr.ipv4_mapped is not None:
            return f"ip:{addr.ipv4_mapped}"
        net = ipaddress.IPv6Network((int(addr) >> 64 << 64, 64))
        return f"ip:{net}"
    return f"ip:{address}"


def client(address: str, account_id: int | None, token: bool = False) -> Client:
    if account_id is not None:
        return Client(f"a:{account_id}", address, account_id)
    if token:
        return Client(address_key(address) + "#token", address, None)
    return Client(address_key(address), address, None)
