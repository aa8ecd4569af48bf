"""``[web]``: where the console listens and how it signs people in."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mdm_core.config import setting
from mdm_core.errors import UsageError


@dataclass
class WebSettings:
    """``[web]`` of the configuration file."""

    listen: str = "127.0.0.1:8080"  # `mdm run --listen HOST:PORT` overrides it
    session_idle: int = setting(3600, minimum=60, maximum=86400)  # seconds without a request before a session ends
    session_lifetime: int = setting(43200, minimum=60, maximum=30 * 86400)  # seconds after sign-in when a session ends anyway
    login_window: int = setting(900, minimum=1, maximum=86400)  # seconds over which failed sign-ins are counted
    login_max_failures_per_name: int = setting(5, minimum=1, maximum=1000)  # then that name is refused until the window passes
    login_max_failures_per_address: int = setting(20, minimum=1, maximum=100000)
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1"])  # X-Forwarded-For/-Proto honoured from these
    upload_max_bytes: int = setting(65536, minimum=1024, maximum=10 * 1024 * 1024)  # largest .vpptoken accepted
    request_max_bytes: int = setting(16 * 1024 * 1024, minimum=65536, maximum=256 * 1024 * 1024)  # any request body (413 beyond)
    background_workers: int = setting(2, minimum=1, maximum=32)  # syncs started from the console at once, per process
    public_url: str | None = None  # how the outside world (Apple's notifications) reaches `mdm run`, e.g. "https://mdm.example.org"

    def __post_init__(self) -> None:
        """A ``public_url`` that is not an http(s) URL of a host (and path) is refused when the
        configuration is read, by every command (``mdm run`` included), not at the first
        account that asks Apple for notifications."""
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment or parts.username:
                raise ValueError(
                    f"public_url {shown_url(self.public_url)!r} is not valid: give the https URL by which Apple reaches this host, "
                    "host and optional path only, e.g. https://mdm.example.org"
                )


def shown_url(url: str) -> str:
    """``url`` as an error may show it: a user name or password, a query and a fragment (where a
    token would be) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return shown + ("?***" if parts.query else "") + ("#***" if parts.fragment else "")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a pair; a bad value is a one-line usage error."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"listen address '{value}' is not HOST:PORT: use e.g. 127.0.0.1:8080 (port 0 picks a free one)")
    return host, int(port)
