"""The alerts plugin in the console and the REST API: the Alerts page and ``GET /api/v1/alerts``
list the recorded alerts (``mdm alerts list``); its Retry buttons and ``POST /api/v1/alerts/retry``
queue failed deliveries again (``mdm alerts retry``, admins only).

An alert's text and its What to do (``action``, :mod:`.rules`) name commands (`mdm vpp sync
NAME`, `mdm apps reclaim ADAMID --unused`); the page and the endpoint say them in their own words
through :data:`WORDING` (added to the web registry's rewordings, ``mdm_core.web.wording``). Mails
and webhooks keep the command line's words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlmodel import col

from mdm_core.db.engine import MAX_ROW_ID
from mdm_core.errors import MdmError
from mdm_core.web.helpers import WebError, host_of, json_object, redirect, render, rest_router
from mdm_core.web.once import form_once, new_form_id
from mdm_core.web.openapi import json_body, one_of
from mdm_core.web.paging import PAGE_SIZE, Cursor, Limit, Page, keyset
from mdm_core.web.schemas import page_of
from mdm_core.web.wording import for_request

from .api_models import Alert

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.web.registry import WebRegistry

TEMPLATES = Path(__file__).resolve().parent / "templates"

VPP_PAGE = "the Apple Volume Purchase Program page"
ALERTS_PAGE = "the Alerts page"  # what a form with an invalid one-time id says to open again
FREE = "or free those no longer used"
RECLAIM = "Reclaim licenses on the app's page"
#: the body of the API's ``mdm apps reclaim APP --unused`` (it answers what it would reclaim, confirmed with ``"yes": true``)
UNUSED_BODY = '{"unused": true}'
INSTALLS_FAILED = "GET /api/v1/apps/installs?status=failed"
#: a job alert's advice (:func:`.rules.job_failing_alert`): no page or endpoint shows or runs the
#: scheduled jobs, so both surfaces say where it is done: on the host
JOB_ON_HOST = (
    "Fix what the error says (the log of the host's `mdm run` has the details). No {} shows or runs scheduled jobs: on the host, "
    r"`mdm jobs` shows the job's last result and `mdm jobs run \1` tries again now; else its next scheduled run does."
)

#: The command line's advice in alerts (regular expressions) as the console and the API say it:
#: (cli, console, api), for ``web.add_wording``. A token's Renew advice is the VPP plugin's.
WORDING = [
    (
        r"\(network, service URL, token state in `mdm vpp account list`\); `mdm vpp runs (\S+)` lists the failed runs; `mdm vpp sync \S+` tries again now",
        f"(network, the account's Service URL, its token on {VPP_PAGE}); its Sync runs list the failed runs; its Synchronize tries again now",
        r"(network, service_url, token_state in GET /api/v1/vpp/accounts/\1); GET /api/v1/vpp/runs?account=\1 lists the failed runs; "
        r"POST /api/v1/vpp/accounts/\1/sync tries again now",
    ),
    (r"or free unused ones: mdm apps reclaim (\S+) --unused", f"{FREE}: {RECLAIM}", rf"{FREE}: POST /api/v1/apps/\1/reclaim {UNUSED_BODY}"),
    (
        r"or free unused ones \(`mdm apps reclaim (\S+) --unused`\), then run `mdm apps install \S+` again for these targets",
        f"{FREE} ({RECLAIM}), then install it again for these targets from its page",
        rf"{FREE} (POST /api/v1/apps/\1/reclaim {UNUSED_BODY}), then POST /api/v1/apps/\1/install again for these targets",
    ),
    (r"see `mdm vpp users`, then install again", "see the account's VPP users, then install again", "see GET /api/v1/vpp/users, then install again"),
    (
        r"See `mdm apps installs --status failed`; fix what Apple said, then run `mdm apps install (\S+)` again",
        "See Install status (failed); fix what Apple said, then install it again from the app's page",
        rf"See {INSTALLS_FAILED}; fix what Apple said, then POST /api/v1/apps/\1/install again",
    ),
    (
        r"See `mdm apps reclaims`; fix what Apple said, then run `mdm apps reclaim (\S+)` again for these devices or users",
        "See Reclaims; fix what Apple said, then reclaim these licenses again on the app's page",
        r"See GET /api/v1/apps/reclaims; fix what Apple said, then POST /api/v1/apps/\1/reclaim again for these devices or users",
    ),
    (
        r"See `mdm apps reclaims`; fix what Apple said: once a sync shows the licenses they hold, `mdm apps reclaim --all --unused` takes them back",
        "See Reclaims; fix what Apple said: once a sync shows the licenses they hold, reclaiming each app's unused licenses on its page takes them back",
        "See GET /api/v1/apps/reclaims; fix what Apple said: once a sync shows the licenses they hold, "
        f"POST /api/v1/apps/reclaim {UNUSED_BODY} takes them back",
    ),
    (r" \(`mdm apps reclaims`\)", " (Reclaims)", " (GET /api/v1/apps/reclaims)"),
    (r" \(`mdm vpp assets --account (\S+)`\)", " (the account's Assets)", r" (GET /api/v1/vpp/assets?account=\1)"),
    (r" \(`mdm apps installs --status failed`\)", " (Install status, failed)", f" ({INSTALLS_FAILED})"),
    (
        r"Fix what the error says \(the log of `mdm run` has the details\); `mdm jobs` shows the job's last result; `mdm jobs run (\S+)` tries again now\.",
        JOB_ON_HOST.format("page of the console"),
        JOB_ON_HOST.format("endpoint of the API"),
    ),
    (r"\(see `mdm alerts list --status failed`\)", "(see the Alerts page, failed deliveries)", "(see GET /api/v1/alerts?status=failed)"),
]
ALERT_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}
RETRY_BODY = 'send {"ids": [alert ids]}, or no body for every failed delivery'


def register(web: WebRegistry) -> None:
    """Add the Alerts page, its navigation entry, ``GET /api/v1/alerts`` and the rewordings."""
    web.add_pages(page_router(), plugin="alerts", templates=TEMPLATES)
    web.add_api(api_router(), plugin="alerts")
    web.add_nav("Alerts", "/alerts", order=75, plugin="alerts")
    web.add_wordings(WORDING)


def alerts_page(host: Host, status: str | None, limit: int, cursor: str | None) -> Page[dict[str, Any]]:
    """Recorded alerts, newest first (those with a delivery in ``status`` when given), each as
    ``mdm alerts list --json`` gives it; an unknown status is a ``UsageError`` (422)."""
    from .listing import alerts_query, with_deliveries
    from .models import AlertMessage
    from .names import name_listed

    query = alerts_query(status)
    with host.db.session() as session:
        page = keyset(session, query, [col(AlertMessage.id)], limit=limit, cursor=cursor, descending=True)
        rows = with_deliveries(session, [m for (m,) in page.items], status)
    return Page(name_listed(host, rows), page.next_cursor)


def in_words(request: Request, value: Any) -> Any:
    """``value`` (an alert's row, or any part of it) with every text in the words of the
    request's surface: title, text, action, the errors in its fields and deliveries."""
    if isinstance(value, str):
        return for_request(request, value)
    if isinstance(value, dict):
        return {k: in_words(request, v) for k, v in value.items()}
    if isinstance(value, list):
        return [in_words(request, v) for v in value]
    return value


def page_router() -> APIRouter:
    """The Alerts page."""
    router = APIRouter()

    @router.get("/alerts")
    def alerts(request: Request, status: str = "", after: str | None = None) -> Response:
        from .channels import configured_channels
        from .settings import settings

        host = host_of(request)
        found = alerts_page(host, status or None, PAGE_SIZE, after)
        channels = bool(configured_channels(settings(host), host.config))  # none: the alerts were sent to nobody
        context = {
            "alerts": found,
            "status": status,
            "statuses": _statuses(),
            "first": not after,
            "field_text": field_text,
            "channels": channels,
            "form_id": new_form_id(),  # the Retry forms' one-time id (an alert's: with its id, all post to one path)
        }
        return render(request, "alerts/alerts.html", context)

    @router.post("/alerts/retry")
    def retry(request: Request, alert: str = Form(""), form_id: str = Form("")) -> Response:
        """Retry failed deliveries (``mdm alerts retry [ID]``): every one, or ``alert``'s. Sent
        twice at once (a double-click): queued once and both answers say how many, where the
        second said there was nothing to retry, or queued again one sent and failed meanwhile."""
        from .delivery import retry_failed
        from .settings import settings

        host = host_of(request)
        ids = [_alert_id(alert)] if alert else []
        try:
            count = form_once(request, form_id, ALERTS_PAGE, lambda: retry_failed(host, ids))
        except MdmError as exc:  # retried or sent meanwhile
            return redirect(request, "/alerts", str(exc), "error")
        if not count:
            return redirect(request, "/alerts", "No failed delivery to retry")
        every = settings(host).deliver_interval
        return redirect(request, "/alerts", f"{count} failed deliver{'y' if count == 1 else 'ies'} queued again, to be sent within {every} seconds")

    return router


def field_text(value: Any) -> str:
    """One of an alert's ``fields`` as the Alerts page shows it: a text or a number as is, none
    as a dash, a list or a mapping (a digest's assets, an install's failures) as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def _alert_id(value: Any) -> int:
    """An alert id of a form or a body, as ``mdm alerts retry ID`` takes it; a 422 otherwise."""
    text = str(value).strip()
    if isinstance(value, bool) or not (isinstance(value, int) or text.isdigit()) or not 1 <= int(text) <= MAX_ROW_ID:
        raise WebError(422, f"alert id {value!r} is not valid: give an alert's id, a number from 1 to {MAX_ROW_ID}")
    return int(text)


def _statuses() -> tuple[str, ...]:
    from .listing import STATUSES

    return STATUSES


def api_router() -> APIRouter:
    """``/api/v1/alerts``: as ``mdm alerts list --json``."""
    router = rest_router(prefix="/alerts", tags=["alerts"])

    @router.get("", response_model=page_of(Alert))
    def api_alerts(request: Request, status: str | None = one_of(_statuses()), limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Recorded alerts, newest first, each with its delivery through each channel (``pending``,
        ``sent``, ``failed``, attempts, last error); ``status``: only alerts with a delivery in
        that state, and only those deliveries. Advice in the API's words."""
        found = alerts_page(host_of(request), status, limit, cursor)
        return {"items": in_words(request, found.items), "next_cursor": found.next_cursor}

    @router.post("/retry", openapi_extra=json_body({"ids": {"type": "array", "items": ALERT_ID}}, optional=True))
    async def api_retry(request: Request) -> dict[str, Any]:
        """Queue failed deliveries again, due now, as ``mdm alerts retry [ID...]``: ``{"ids":
        [alert ids]}``, or no body for every one; ``{"queued": N}``. An id without a failed
        delivery is a 400 and nothing is queued."""
        from starlette.concurrency import run_in_threadpool

        from .delivery import retry_failed

        ids = await _retry_ids(request)
        return {"queued": await run_in_threadpool(retry_failed, host_of(request), ids)}

    return router


async def _retry_ids(request: Request) -> list[int]:
    """The alert ids of a retry request's body (none: every failed delivery), checked."""
    body = await json_object(request, send=RETRY_BODY, shape=RETRY_BODY, empty=True)
    if not set(body) <= {"ids"} or not isinstance(body.get("ids", []), list):
        raise WebError(422, RETRY_BODY)
    return [_alert_id(v) for v in body.get("ids", [])]
