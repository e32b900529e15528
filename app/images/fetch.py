"""Fetching http(s) image URLs without becoming an SSRF proxy.

Rules (``ROUTER_IMAGE_FETCH__*``; fetching is off by default):

* The URL must parse, be http(s), name a host, carry no credentials; else 400
  ``invalid_image_url``.
* The host is resolved **once** (an injectable resolver, default ``loop.getaddrinfo``);
  every address must be globally routable (``ipaddress.is_global``, not multicast, and no
  non-global IPv4 embedded in IPv4-mapped, IPv4-compatible, 6to4, Teredo or NAT64
  addresses), else 400 ``image_url_forbidden`` before any connection. The connection
  goes to the checked address (Host header and TLS SNI/certificate name stay the
  host name), so DNS rebinding cannot swap the address in between.
* Redirects are followed by hand, at most ``max_redirects``, each hop checked again.
* One total deadline per fetch (``timeout_s``: DNS, connect, redirects, body) and one per
  request (``request_timeout_s``); a request's fetches run in parallel, at most
  ``max_parallel`` at once. ``Accept-Encoding: identity`` and raw bytes: nothing is
  inflated; the byte cap is enforced while streaming.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from app.settings import Settings
from models.core.errors import BadRequestError, PayloadTooLargeError, RouterError

T = TypeVar("T")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressPolicy = Callable[[IPAddress], bool]
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(slots=True)
class ImageRef:
    """One image part of a request: its URL and the request parameter naming it."""

    url: str
    param: str


async def first_error(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently; on failure cancel the rest and raise the first error."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as group_error:
        errors = list(group_error.exceptions)
        raise next((e for e in errors if isinstance(e, RouterError)), errors[0]) from None
    return [t.result() for t in tasks]


def is_public_address(addr: IPAddress) -> bool:
    """Whether connecting to ``addr`` can only reach the public internet."""
    if isinstance(addr, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address | None] = [addr.ipv4_mapped, addr.sixtofour]
        embedded += list(addr.teredo or ())
        if addr in IPV4_COMPATIBLE or any(addr in net for net in NAT64):
            embedded.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if any(v4 is not None and not is_public_address(v4) for v4 in embedded):
            return False
        if addr in IPV4_COMPATIBLE:
            return False  # deprecated form: never a real public destination
    return addr.is_global and not addr.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of ``host`` from the system resolver, without blocking the loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed, normalised fetch URL."""

    scheme: str
    host: str  # IDNA-encoded name, or an IP literal without brackets
    port: int
    path: str  # path and query
    host_header: str

    def url_for(self, ip: str) -> str:
        literal = f"[{ip}]" if ":" in ip else ip
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


def parse_url(url: str, param: str) -> Target:
    """Check and split an image URL; anything malformed is 400 ``invalid_image_url``."""

    def invalid(why: str) -> BadRequestError:
        return BadRequestError(f"invalid image URL: {why}", param=param, code="invalid_image_url")

    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:  # bad brackets, port out of range or not a number
        raise invalid(str(exc)[:80]) from None
    if parts.scheme not in ("http", "https"):
        raise invalid("the scheme must be http or https")
    if not host:
        raise invalid("no host")
    if parts.username is not None or parts.password is not None:
        raise invalid("credentials are not allowed")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise invalid("the host name is not valid") from None
    if port == 0:
        raise invalid("port 0")
    default = 443 if parts.scheme == "https" else 80
    bracketed = f"[{host}]" if ":" in host else host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    header = bracketed if port in (None, default) else f"{bracketed}:{port}"
    return Target(parts.scheme, host, port or default, path, header)


class ImageFetcher:
    """Fetches images over http(s) under the rules above. ``resolver`` and ``is_allowed``
    are attributes so tests (and deployments with their own policy) can replace them."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        is_allowed: AddressPolicy | None = None,
    ) -> None:
        self.settings = settings.image_fetch
        self.max_bytes = settings.limits.max_image_bytes
        self.resolver: Resolver = resolver or system_resolver
        allow_all = self.settings.allow_private
        self.is_allowed: AddressPolicy = is_allowed or (
            (lambda _: True) if allow_all else is_public_address
        )
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # never trust_env: a proxy would bypass the address check
            self._client = httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_keepalive_connections=0),
                timeout=httpx.Timeout(self.settings.timeout_s),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def fetch_all(self, refs: Sequence[ImageRef]) -> list[bytes]:
        """The bytes of every URL, in parallel, under the per-request deadline."""
        if not refs:
            return []
        if not self.settings.enabled:
            raise BadRequestError(
                "http(s) image URLs are disabled; send the image as a data: URL "
                "(or set ROUTER_IMAGE_FETCH__ENABLED=true)",
                param=refs[0].param,
                code="image_fetch_disabled",
            )
        gate = asyncio.Semaphore(self.settings.max_parallel)

        async def one(ref: ImageRef) -> bytes:
            async with gate:
                return await self.fetch(ref.url, ref.param)

        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await first_error([one(r) for r in refs])
        except TimeoutError:
            raise BadRequestError(
                f"image URLs did not answer within {self.settings.request_timeout_s} s",
                param=refs[0].param,
                code="image_fetch_timeout",
            ) from None

    async def fetch(self, url: str, param: str) -> bytes:
        """The bytes of one image URL, under the per-fetch deadline."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await self._follow(url, param)
        except TimeoutError:
            raise BadRequestError(
                f"image URL did not answer within {self.settings.timeout_s} s",
                param=param,
                code="image_fetch_timeout",
            ) from None

    async def _follow(self, url: str, param: str) -> bytes:
        for _ in range(self.settings.max_redirects + 1):
            target = parse_url(url, param)
            ip = await self._checked_address(target, param)
            location = await self._get(target, ip, param)
            if isinstance(location, bytes):
                return location
            url = urljoin(url, location)
        raise BadRequestError(
            f"image URL redirected more than {self.settings.max_redirects} times",
            param=param,
            code="image_fetch_failed",
        )

    async def _checked_address(self, target: Target, param: str) -> str:
        """Resolve once; refuse unless every address is allowed; return the first."""
        try:
            addresses = [ipaddress.ip_address(target.host)]
        except ValueError:
            try:
                found = await self.resolver(target.host, target.port)
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
            except (OSError, ValueError):
                addresses = []
            if not addresses:
                raise BadRequestError(
                    f"cannot resolve image host '{target.host[:100]}'",
                    param=param,
                    code="image_fetch_failed",
                ) from None
        if not all(self.is_allowed(a) for a in addresses):
            raise BadRequestError(
                "image URL points at a private, loopback or otherwise non-public address",
                param=param,
                code="image_url_forbidden",
            )
        return str(addresses[0])

    async def _get(self, target: Target, ip: str, param: str) -> bytes | str:
        """GET the checked address: the body, or a redirect's Location."""
        headers = {"Host": target.host_header, "Accept-Encoding": "identity", "Accept": "image/*"}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            request = self.client.build_request(
                "GET", target.url_for(ip), headers=headers, extensions=extensions
            )
            response = await self.client.send(request, stream=True)
            try:
                return await self._read(response, param)
            finally:
                await response.aclose()
        except httpx.HTTPError:
            raise BadRequestError(
                "image URL could not be fetched", param=param, code="image_fetch_failed"
            ) from None

    async def _read(self, response: httpx.Response, param: str) -> bytes | str:
        if response.status_code in REDIRECTS and response.headers.get("location"):
            return response.headers["location"]
        if response.status_code != 200:
            raise BadRequestError(
                f"image URL answered HTTP {response.status_code}",
                param=param,
                code="image_fetch_failed",
            )
        too_large = PayloadTooLargeError(
            f"image is larger than {self.max_bytes} bytes", param=param, code="image_too_large"
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        chunks, size = [], 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)
