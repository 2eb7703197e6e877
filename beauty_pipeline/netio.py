"""Network reads with an overall deadline, and a guard that keeps fetches off internal addresses."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import urllib.parse

import requests

from beauty_pipeline.errors import PipelineError

ALLOW_PRIVATE_ENV = "BEAUTY_PIPELINE_ALLOW_PRIVATE_HOSTS"
MAX_REDIRECTS = 5


class NetworkError(PipelineError):
    """A fetch that failed, ran past its deadline or was refused; `transient` allows a retry."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class BlockedHostError(NetworkError):
    """A URL whose host resolves to a loopback, link-local, private or multicast address."""


def private_hosts_allowed() -> bool:
    """BEAUTY_PIPELINE_ALLOW_PRIVATE_HOSTS=1 lets fetches reach internal addresses (tests only)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # not is_global also covers shared (100.64/10), documentation and benchmark ranges
    return (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def check_public_host(url: str, allow_private: bool = False) -> None:
    """Refuse a URL unless http(s) and every address its host resolves to is public."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BlockedHostError(f"refusing {url[:120]!r}: only http(s) URLs with a host are fetched")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise NetworkError(f"cannot resolve host {parts.hostname!r} of {url[:120]!r}: {error}",
                           transient=True) from error
    internal = sorted({info[4][0] for info in infos if _is_internal(info[4][0])})
    if internal:
        raise BlockedHostError(
            f"refusing {url[:120]!r}: host {parts.hostname!r} resolves to internal address "
            f"{', '.join(internal)}; set {ALLOW_PRIVATE_ENV}=1 only if that is intended")


def guarded_get(session: requests.Session, url: str, timeout: float,
                allow_private: bool = False) -> requests.Response:
    """GET (streamed) following redirects by hand, checking the host of every hop."""
    for _ in range(MAX_REDIRECTS + 1):
        check_public_host(url, allow_private)
        response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
        if not response.is_redirect:
            return response
        location = response.headers.get("Location", "")
        response.close()
        url = urllib.parse.urljoin(url, location)
    raise NetworkError(f"more than {MAX_REDIRECTS} redirects from {url[:120]!r}")


def read_body(response: requests.Response, max_bytes: int, deadline: float, label: str) -> bytes:
    """The whole body, or NetworkError once it passes max_bytes or the monotonic deadline."""
    chunks, size = [], 0
    raw = response.raw
    while True:
        if time.monotonic() > deadline:
            raise NetworkError(f"timeout: {label} was still arriving at its deadline",
                               transient=True)
        try:
            chunk = raw.read1(1 << 16, decode_content=True)
        except requests.RequestException as error:
            raise NetworkError(f"{label}: {error}", transient=True) from error
        except Exception as error:  # urllib3 read timeouts / protocol errors while streaming
            raise NetworkError(f"{label}: {type(error).__name__}: {error}",
                               transient=True) from error
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise NetworkError(f"too large: {label} is more than {max_bytes} bytes")
        chunks.append(chunk)
