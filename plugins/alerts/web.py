"""The alerts plugin's words in the console and the REST API: an alert's text and its What to
do (``action``, :mod:`.rules`) name commands (`mdm vpp sync NAME`, `mdm apps reclaim ADAMID
--unused`); wherever the console or the API shows them, :data:`WORDING` (added to the web
registry's rewordings, ``mdm_core.web.wording``) says the page or the endpoint instead. Mails
and webhooks keep the command line's words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdm_core.web.registry import WebRegistry

VPP_PAGE = "the Apple Volume Purchase Program page"
FREE = "or free those no longer used"
RECLAIM = "Reclaim licenses on the app's page"
INSTALLS_FAILED = "GET /api/v1/apps/installs?status=failed"

#: The command line's advice in alerts (regular expressions) as the console and the API say it:
#: (cli, console, api), for ``web.add_wording``. A token's Renew advice is the VPP plugin's.
WORDING = [
    (
        r"\(network, service URL, token state in `mdm vpp account list`\); `mdm vpp runs (\S+)` lists the failed runs; `mdm vpp sync \S+` tries again now",
        f"(network, the account's Service URL, its token on {VPP_PAGE}); its Sync runs list the failed runs; its Synchronize tries again now",
        r"(network, service_url, token_state in GET /api/v1/vpp/accounts/\1); GET /api/v1/vpp/runs?account=\1 lists the failed runs; "
        r"POST /api/v1/vpp/accounts/\1/sync tries again now",
    ),
    (r"or free unused ones: mdm apps reclaim (\S+) --unused", f"{FREE}: {RECLAIM}", rf"{FREE}: POST /api/v1/apps/\1/reclaim"),
    (
        r"or free unused ones \(`mdm apps reclaim (\S+) --unused`\), then run `mdm apps install \S+` again for these targets",
        f"{FREE} ({RECLAIM}), then install it again for these targets from its page",
        rf"{FREE} (POST /api/v1/apps/\1/reclaim), then POST /api/v1/apps/\1/install again for these targets",
    ),
    (r"see `mdm vpp users`, then install again", "see the account's VPP users, then install again", "see GET /api/v1/vpp/users, then install again"),
    (
        r"See `mdm apps installs --status failed`; fix what Apple said, then run `mdm apps install (\S+)` again",
        "See Install status (failed); fix what Apple said, then install it again from the app's page",
        rf"See {INSTALLS_FAILED}; fix what Apple said, then POST /api/v1/apps/\1/install again",
    ),
    (r" \(`mdm vpp assets --account (\S+)`\)", " (the account's Assets)", r" (GET /api/v1/vpp/assets?account=\1)"),
    (r" \(`mdm apps installs --status failed`\)", " (Install status, failed)", f" ({INSTALLS_FAILED})"),
]


def register(web: WebRegistry) -> None:
    """Add the alerts' rewordings."""
    for cli, console, api in WORDING:
        web.add_wording(cli, console, api)
