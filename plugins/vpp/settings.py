"""``[vpp]`` configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VppSettings:
    """Settings of the VPP plugin (``[vpp]`` in ``conf/mdm.toml``)."""

    default_interval: int = 3600  # "Account Synchronization Interval (sec)" of new accounts
    min_interval: int = 60  # the shortest interval accepted (be gentle with Apple's service)
    full_reconcile_interval: int = 86400  # a full sync at least this often (seconds)
    lock_wait: float = 0.0  # how long a manual sync waits for a running one
    lock_ttl: float = 300.0  # a crashed sync's lock expires after this (refreshed while running)
    request_timeout: float = 60.0
    max_attempts: int = 5  # per request, first try included
    max_total_wait: float = 300.0  # seconds of back-off per request at most
    mdm_name: str = "mdm-host"  # mdmInfo.name sent to Apple
    accounts_refresh: int = 30  # how often `mdm run` picks up added, removed or re-timed accounts
