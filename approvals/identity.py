"""Who a person is, when a reverse proxy in front of the bridge authenticated them.

The proxy (oauth2-proxy, Pomerium, nginx with auth_request, Authelia, ...) sets a header with the
user's name. That header is believed only on requests whose peer address is one of the configured
proxies (``BRIDGE_TRUSTED_PROXIES``); from anyone else it is ignored, or a visitor could name
themselves anyone by sending it. With no header name configured, nobody's word counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from aiohttp import web

from bridge.asl.limits import clean_text

#: As much of a name as the approvals keep.
MAX_NAME = 200


@dataclass(frozen=True)
class ProxyIdentity:
    #: The header the proxy sets (e.g. X-Forwarded-User); None: identities are not taken.
    header: str | None = None
    networks: tuple[IPv4Network | IPv6Network, ...] = field(default_factory=tuple)
    #: The header with the user's groups, comma-separated (e.g. X-Forwarded-Groups).
    groups_header: str | None = None

    @classmethod
    def of(
        cls, header: str | None, trusted: Sequence[str], groups_header: str | None = None
    ) -> ProxyIdentity:
        """``ValueError`` for an address or network that is none."""
        networks = tuple(ip_network(item, strict=False) for item in trusted)
        return cls(header or None, networks, groups_header or None)

    def trusts(self, request: web.Request) -> bool:
        """Whether the request came straight from a trusted proxy."""
        if self.header is None or not self.networks or request.remote is None:
            return False
        try:
            peer = ip_address(request.remote)
        except ValueError:  # a Unix socket's peer, say
            return False
        return any(peer in network for network in self.networks)

    def groups(self, request: web.Request) -> tuple[str, ...]:
        """The groups a trusted proxy says the user is in (none otherwise)."""
        if self.groups_header is None or self.who(request) is None:
            return ()
        given = request.headers.get(self.groups_header, "")
        names = (clean_text(name.strip(), MAX_NAME) for name in given.split(","))
        return tuple(dict.fromkeys(name for name in names if name))[:100]

    def who(self, request: web.Request) -> str | None:
        """The user a trusted proxy named; None otherwise."""
        if self.header is None or not self.trusts(request):
            return None
        name = request.headers.get(self.header, "").strip()
        return clean_text(name, MAX_NAME) if name else None
