"""``[mobile_apps]`` configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mdm_core.config import setting
from mdm_core.scheduler import MAX_INTERVAL

if TYPE_CHECKING:
    from mdm_core.host import Host


@dataclass
class MobileAppsSettings:
    """Settings of the mobile_apps plugin (``[mobile_apps]`` in ``conf/mdm.toml``)."""

    auto_install: bool = False  # install apps whose licenses were assigned outside this host (Apple's portal)
    metadata_max_age: int = setting(86400, minimum=0, maximum=MAX_INTERVAL)  # refresh names, bundle ids, versions and icons after this many seconds
    metadata_retry: int = setting(300, minimum=1, maximum=MAX_INTERVAL)  # the metadata job runs this often; a failed lookup is retried after this
    reclaim_retry: int = setting(300, minimum=1, maximum=MAX_INTERVAL)  # the reclaim job retries pending reclaims this often
    reclaim_wait: float = setting(10.0, minimum=0, maximum=3600)  # how long a reclaim follows Apple's event before leaving it to the job
    install_wait: float = setting(30.0, minimum=0, maximum=3600)  # default of `mdm apps install --wait`
    install_retry: int = setting(300, minimum=1, maximum=MAX_INTERVAL)  # the installs job asks Apple again about pending installs this often
    interrupted_after: float = setting(
        900.0, minimum=0, maximum=MAX_INTERVAL
    )  # an install still "associating" this long was interrupted: the installs job completes it
    auto_update: bool = False  # queue InstallApplication when Apple publishes a new version (off: an update interrupts the app in use)
    update_check: int = setting(86400, minimum=1, maximum=MAX_INTERVAL)  # the mobile_apps.updates job looks for new versions this often
    history_retention_days: int = setting(365, minimum=1, maximum=3650)  # ended installs and reclaims are kept this long (core.housekeeping)
    remove_on_unenroll: bool = True  # ManagementFlags 1: remove the app when the MDM profile is removed
    prevent_backup: bool = False  # ManagementFlags 4: do not back up the app's data

    def management_flags(self) -> int:
        """The ``ManagementFlags`` of ``InstallApplication``."""
        return (1 if self.remove_on_unenroll else 0) | (4 if self.prevent_backup else 0)


def settings(host: Host) -> MobileAppsSettings:
    """The validated ``[mobile_apps]`` section."""
    return host.config.section("mobile_apps", MobileAppsSettings)
