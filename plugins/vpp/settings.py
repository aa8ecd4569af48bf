"""``[vpp]`` configuration."""

from __future__ import annotations

from dataclasses import dataclass

from mdm_core.config import setting
from mdm_core.scheduler import MAX_INTERVAL


@dataclass
class VppSettings:
    """Settings of the VPP plugin (``[vpp]`` in ``conf/mdm.toml``)."""

    default_interval: int = setting(3600, minimum=1, maximum=MAX_INTERVAL)  # "Account Synchronization Interval (sec)" of new accounts
    min_interval: int = setting(60, minimum=1, maximum=MAX_INTERVAL)  # the shortest interval accepted (be gentle with Apple's service)
    full_reconcile_interval: int = setting(86400, minimum=1, maximum=MAX_INTERVAL)  # a full sync at least this often (seconds)
    lock_wait: float = setting(0.0, minimum=0, maximum=MAX_INTERVAL)  # how long a manual sync waits for a running one
    lock_ttl: float = setting(300.0, minimum=1, maximum=86400)  # a crashed sync's lock expires after this (refreshed while running)
    request_timeout: float = setting(60.0, minimum=0.1, maximum=3600)
    max_attempts: int = setting(5, minimum=1, maximum=100)  # per request, first try included
    max_total_wait: float = setting(300.0, minimum=0, maximum=86400)  # seconds of back-off per request at most
    mdm_name: str = setting("mdm-host", minimum=1, maximum=100)  # mdmInfo.name sent to Apple: the MDM other admins see holding the location
    accounts_refresh: int = setting(30, minimum=1, maximum=86400)  # how often `mdm run` picks up added, removed or re-timed accounts
    notification_max_bytes: int = setting(1048576, minimum=1024, maximum=67108864)  # a larger notification from Apple is refused (413)
    notifications_poll: int = setting(30, minimum=1, maximum=86400)  # how often `mdm run` acts on notifications left waiting (a sync held the lock, a crash)
    notification_retention: int = setting(
        30 * 86400, minimum=3600, maximum=10 * 365 * 86400
    )  # seconds a notification acted on is kept (its id guards against repeats)
    sync_run_retention_days: int = setting(90, minimum=1, maximum=3650)  # sync runs are kept this long (an account's latest, latest ok and latest full: always)
    asset_count_retention_days: int = setting(365, minimum=1, maximum=3650)  # recorded asset counts (the chart) are kept this long (the latest before: always)
