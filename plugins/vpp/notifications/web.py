"""``POST /apple/apps-books/notify/{id}``: where Apple posts an account's notifications.

A public route (``add_public``): it carries its own authentication, the bearer secret of the
account whose ``mdmInfo`` id ends the path, checked by :func:`.inbox.receive` before anything
else. The body is read up to ``[vpp] notification_max_bytes`` (one byte more is a 413
without reading further), recorded, answered, and then acted on in the background
(:func:`.act.process_pending`): Apple's 2xx never waits for the mirror.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mdm_core.web.helpers import host_of, run_in_background
from mdm_core.web.storable import OWN_BODY

from ..accounts import settings
from .act import process_pending
from .configure import NOTIFY_PATH
from .inbox import receive

if TYPE_CHECKING:
    from mdm_core.web.registry import WebRegistry


def register(web: WebRegistry) -> None:
    """Add the notification endpoint as a public route of the console's server."""
    web.add_public(router(), plugin="vpp")


def router() -> APIRouter:
    """The one route Apple calls."""
    routes = APIRouter()

    @routes.post(NOTIFY_PATH + "{id}", include_in_schema=False, openapi_extra=OWN_BODY)  # the body is read after the bearer is checked
    async def notify(id: str, request: Request) -> JSONResponse:  # noqa: A002 - the path's name in the route table
        host = host_of(request)
        limit = settings(host).notification_max_bytes
        declared = request.headers.get("content-length") or ""
        too_large = declared.isdigit() and int(declared) > limit
        body = b""
        if not too_large:  # read at most one byte more than allowed
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    break
        receipt = await run_in_threadpool(receive, host, id, request.headers.get("authorization"), body, max_bytes=limit, too_large=too_large)
        if receipt.to_act and receipt.account_id is not None:
            account_id = receipt.account_id
            run_in_background(request, lambda: process_pending(host, account_id))
        headers = {"WWW-Authenticate": "Bearer"} if receipt.status == 401 else None
        return JSONResponse({"status" if receipt.status == 200 else "error": receipt.message}, status_code=receipt.status, headers=headers)

    return routes
