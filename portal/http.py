"""Request and response helpers shared by every app: the client's address, file downloads."""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse, StreamingHttpResponse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# How many X-Forwarded-For hops we look at, from the right: more than any real proxy chain,
# few enough that a header stuffed with addresses costs nothing to read.
MAX_FORWARDED_HOPS = 16


def client_ip(request) -> str | None:
    """The address of the client that sent this request, as far as we can vouch for it.

    REMOTE_ADDR is the peer of this process. Only when that peer is one of TRUSTED_PROXIES do
    we read X-Forwarded-For, walking it from the right (the entries our proxies appended) and
    skipping our own proxies: the first address that is not one of them is the client. Whatever
    stands left of it was written by the client and is never believed. A malformed entry stops
    the walk at the last address a trusted proxy vouched for, so a header can neither raise nor
    choose the answer. X-Real-IP is never read: any client can send it.
    """
    peer = _parse_ip(request.META.get("REMOTE_ADDR"))
    if peer is None:
        return None
    proxies = trusted_proxies()
    if not _is_trusted(peer, proxies):
        return str(peer)
    vouched = peer
    for hop in _forwarded_hops(request.META.get("HTTP_X_FORWARDED_FOR", "")):
        address = _parse_ip(hop)
        if address is None:
            break  # not an address a trusted proxy would write: stop at what we can vouch for
        vouched = address
        if not _is_trusted(address, proxies):
            break
    return str(vouched)


def trusted_proxies() -> tuple[IPNetwork, ...]:
    return _parse_networks(tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ()))


@lru_cache(maxsize=8)
def _parse_networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as error:
            raise ImproperlyConfigured(f"TRUSTED_PROXIES: {value!r} is not an IP address or network") from error
    return tuple(networks)


def _is_trusted(address: IPAddress, proxies: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def _forwarded_hops(header: str) -> list[str]:
    # rsplit keeps everything beyond the last MAX_FORWARDED_HOPS entries as one (malformed)
    # piece, which stops the walk: a long header is neither parsed nor trusted.
    return [hop.strip() for hop in reversed(header.rsplit(",", MAX_FORWARDED_HOPS))] if header else []


def _parse_ip(value) -> IPAddress | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1, for the proxy list and the log
        if address.scope_id:
            # fe80::1%eth0: the zone is local to the host and PostgreSQL's inet refuses it.
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def download_response(content: bytes, *, file_name: str, content_type: str) -> HttpResponse:
    """A file download: named, sized, and never kept by a shared cache (it is someone's invoice)."""
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response["Content-Length"] = str(len(content))
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def streaming_download_response(chunks, *, file_name: str, content_type: str) -> StreamingHttpResponse:
    """A file download sent as it is made (an export of any size in flat memory): named, not
    sized (the length is known only at the end), and never kept by a shared cache."""
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
