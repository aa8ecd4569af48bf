"""``[alerts]``: who hears about trouble, through which channels, and from what threshold.

Secrets (the SMTP password, webhook URLs, which carry their own credential in Slack and Teams)
are only ever references, ``{ env = "VAR" }`` or ``{ file = "path" }``, resolved when a message
is sent; they never appear in logs, errors or output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mdm_core.config import SecretRef
from mdm_core.errors import ConfigError

if TYPE_CHECKING:
    from mdm_core.host import Host

SECURITY = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ADDRESS = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")
PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass
class AlertsSettings:
    """Settings of the alerts plugin (``[alerts]`` in ``conf/mdm.toml``)."""

    # e-mail over SMTP
    email_to: list[str] = field(default_factory=list)  # recipients; none: no e-mail channel
    email_from: str = ""  # required with email_to
    smtp_host: str = "localhost"
    smtp_port: int = 0  # 0: 587 for starttls, 465 for ssl, 25 for none
    smtp_security: str = "starttls"  # "starttls", "ssl" (implicit TLS) or "none" (a local relay only)
    smtp_username: str = ""  # log in when set
    smtp_password: SecretRef | None = None  # { env = "VAR" } or { file = "path" }
    smtp_ca_file: str = ""  # a CA bundle for a relay with a private certificate
    smtp_timeout: float = 30.0
    # webhooks (Slack, Teams, anything taking a JSON POST): name = { env = "VAR" } holding the URL
    webhooks: dict[str, SecretRef] = field(default_factory=dict)
    webhook_timeout: float = 10.0
    # what is alerted
    sync_failures: int = 3  # failed syncs in a row before an account's sync is reported failing
    job_failures: bool = True  # a scheduled job whose last run failed (`mdm jobs`) is reported failing; false: never
    low_licenses: int | str = "10%"  # available licenses below this count, or this percent of the total; 0: never
    low_licenses_per_asset: dict[str, int | str] = field(default_factory=dict)  # "adamId" or "adamId:pricingParam" = threshold
    low_licenses_margin: int = 2  # a low asset is back to normal only this many licenses above its threshold; 0: at it
    # delivery
    deliver_interval: int = 30  # the alerts.deliver job sends what is due this often (seconds)
    check_interval: int = 3600  # the alerts.check job re-reads token expiry and license counts this often
    max_attempts: int = 8  # per channel and message; then the delivery is marked failed
    retry_delay: float = 60.0  # first retry after this many seconds, doubling each time ...
    retry_max_delay: float = 3600.0  # ... up to this
    keep_days: int = 90  # sent and failed alerts are kept this long for `mdm alerts list`
    subject_prefix: str = "[mdm]"

    @property
    def channel_names(self) -> list[str]:
        """The channels configured, by name (``email``, ``webhook:NAME``): what an alert's
        deliveries are queued for, known without loading the channels' code (SMTP, HTTP)."""
        return (["email"] if self.email_to else []) + [f"webhook:{name}" for name in sorted(self.webhooks)]

    @property
    def port(self) -> int:
        """The SMTP port: the one given, else the usual one for the security mode."""
        return self.smtp_port or DEFAULT_PORTS[self.smtp_security]


@dataclass(frozen=True)
class Threshold:
    """Alert when fewer licenses than ``count``, or than ``percent`` of the total, are available."""

    count: int | None = None
    percent: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.count) or bool(self.percent)

    def is_low(self, available: int, total: int) -> bool:
        """True when ``available`` is below the threshold."""
        if self.count is not None:
            return available < self.count
        return self.percent is not None and available * 100 < self.percent * total

    def bar(self, total: int) -> int:
        """The fewest available licenses of ``total`` that are not low."""
        if self.count is not None:
            return self.count
        least = math.ceil((self.percent or 0) * total / 100)
        if least > 0 and not self.is_low(least - 1, total):  # a float rounded up past the bar
            least -= 1
        return least + 1 if self.is_low(least, total) else least

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


def parse_threshold(where: str, value: int | str) -> Threshold:
    """``5`` (a count) or ``"10%"`` (of the asset's total); a one-line error otherwise."""
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{where} must be 0 or more, got {value}")
        return Threshold(count=value)
    match = PERCENT.match(value)
    if match is None or float(match.group(1)) > 100:
        raise ConfigError(f'{where} must be a count like 5 or a percentage like "10%", got {value!r}')
    return Threshold(percent=float(match.group(1)))


def settings(host: Host) -> AlertsSettings:
    """The validated ``[alerts]`` section."""
    return host.config.section("alerts", AlertsSettings)


@dataclass(frozen=True)
class Thresholds:
    """The default threshold and the per-asset ones keyed by (adamId, pricingParam or None), and
    the recovery margin (licenses past a threshold before a low asset is back to normal)."""

    default: Threshold
    per_asset: dict[tuple[str, str | None], Threshold]
    margin: int = 0

    def for_asset(self, adam_id: str, pricing: str) -> Threshold:
        """One asset's threshold: its own (with or without pricingParam), else the default."""
        return self.per_asset.get((adam_id, pricing)) or self.per_asset.get((adam_id, None)) or self.default


def thresholds(s: AlertsSettings, source: str | None = None) -> Thresholds:
    """``low_licenses``, ``low_licenses_per_asset`` and ``low_licenses_margin``, parsed (one-line
    errors naming the key, after the configuration file ``source`` when given)."""
    at = f"{source}: " if source else ""
    default = parse_threshold(f"{at}[alerts] low_licenses", s.low_licenses)
    if s.low_licenses_margin < 0:
        raise ConfigError(
            f"{at}[alerts] low_licenses_margin must be 0 or more (licenses above the threshold before a low asset is "
            f"back to normal; 0: at the threshold itself), got {s.low_licenses_margin}"
        )
    per_asset: dict[tuple[str, str | None], Threshold] = {}
    for key, value in s.low_licenses_per_asset.items():
        adam_id, colon, pricing = key.partition(":")
        pricing = pricing.upper()  # Apple's are STDQ and PLUS: "stdq" used to match no asset, silently
        if not adam_id.isdigit() or (colon and not pricing.isalnum()):
            raise ConfigError(f'{at}[alerts.low_licenses_per_asset] key {key!r} must be an adamId, or adamId:pricingParam like "1029705796:STDQ"')
        per_asset[(adam_id, pricing or None)] = parse_threshold(f"{at}[alerts.low_licenses_per_asset] {key}", value)
    return Thresholds(default, per_asset, s.low_licenses_margin)


def validate(s: AlertsSettings, source: str) -> None:
    """Check what the types alone cannot; a one-line ``ConfigError`` naming the key."""
    where = f"{source}: [alerts]"
    if s.smtp_security not in SECURITY:
        raise ConfigError(f"{where} smtp_security must be one of {', '.join(SECURITY)}, got {s.smtp_security!r}")
    for address in s.email_to:
        if not ADDRESS.match(address):
            raise ConfigError(f"{where} email_to: {address!r} is not an e-mail address")
    if s.email_to and not ADDRESS.match(s.email_from):
        raise ConfigError(f'{where} email_from must be the sender\'s address (e.g. "mdm@school.example") when email_to is set')
    if s.smtp_password is not None and not s.smtp_username:
        raise ConfigError(f"{where} smtp_password is set without smtp_username: set both to log in, or neither")
    if not 0 <= s.smtp_port <= 65535:
        raise ConfigError(f"{where} smtp_port must be a port number, got {s.smtp_port}")
    for name in s.webhooks:
        if not WEBHOOK_NAME.match(name):
            raise ConfigError(f"{where} webhook name {name!r} must be letters, digits, '-' or '_'")
    for key in ("sync_failures", "deliver_interval", "check_interval", "max_attempts", "keep_days"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{where} {key} must be at least 1, got {getattr(s, key)}")
    for key in ("smtp_timeout", "webhook_timeout", "retry_delay", "retry_max_delay"):
        value = getattr(s, key)
        if not 0 < value < float("inf"):
            raise ConfigError(f"{where} {key} must be a positive number of seconds, got {value}")
    if s.retry_delay > s.retry_max_delay:
        raise ConfigError(
            f"{where} retry_delay ({s.retry_delay:g}) is larger than retry_max_delay ({s.retry_max_delay:g}), "
            "so every retry would wait retry_max_delay: lower retry_delay or raise retry_max_delay"
        )
    thresholds(s, source)
