"""The simulator's control actions from the command line (``mdm vpp simulator change|fault|actions``):
what each action and fault takes, and a small client of the ``/_sim/`` control API of a
simulator running in another process (``mdm vpp simulator serve``).

The parameters are read from the methods themselves (``inspect.signature``), so the help, the
README table and the server never disagree.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

#: control action -> (Simulator method, what it does)
ACTIONS: dict[str, tuple[str, str]] = {
    "purchase": ("purchase", "licenses bought in Apple's portal: more of an asset, or a new asset without adam_id"),
    "assign": ("assign_in_portal", "a license assigned in Apple's portal to a device serial or a user"),
    "remove": ("remove_in_portal", "a license removed in Apple's portal"),
    "retire_user": ("retire_user", "a VPP user retired in Apple's portal"),
    "create_user": ("create_user", "a VPP user created outside this MDM"),
    "accept_invite": ("accept_invite", "a Registered user accepts the invitation (becomes Associated)"),
    "remove_asset": ("remove_asset", "an asset refunded: gone with its licenses"),
    "refund": ("remove_asset", "the same as remove_asset"),
    "transfer": ("transfer", "licenses moved between locations in Apple's portal: count > 0 in, < 0 out (ASSET_COUNT)"),
    "publish_version": ("publish_version", "a new version of an app in the App Store: its metadata lookup answers it"),
    "mutate_fraction": ("mutate_fraction", "a share of the licenses moved at random (benchmarks)"),
    "expire_token": ("expire_token", "the token expires: every authenticated request answers error 9621"),
    "revoke_token": ("revoke_token", "the token is revoked (a new one was downloaded): error 9625"),
    "claim_by_other_mdm": ("claim_by_other_mdm", "another MDM writes its mdmInfo to the location"),
    "restore_token": ("restore_token", "the token works again and the claim is undone"),
}

#: fault kind -> its own parameters (besides endpoint, count, after) and what it does
FAULTS: dict[str, tuple[dict[str, str], str]] = {
    "rate_limit": ({"retry_after": "seconds in a Retry-After header (none by default)"}, "HTTP 429 with errorNumber 9646"),
    "server_error": ({"status": "500 (default) or 503", "body": '"9603" (default) or "empty"', "retry_after": "seconds"}, "a server error"),
    "error_200": ({"error_number": "Apple's errorNumber (default 9622)"}, "HTTP 200 with an error body"),
    "slow": ({"seconds": "delay before answering (default 1.0)"}, "a slow answer"),
    "drop": ({}, "the connection closed without an answer"),
    "truncated_json": ({}, "the real answer cut in half"),
    "malformed_json": ({"body": "the garbage body to send"}, "a body that is not JSON, HTTP 200"),
    "missing_field": ({"field": "the key to remove from the answer and its records"}, "a field missing"),
    "extra_field": ({"fields": 'a JSON object of unknown keys, e.g. {"x":1}'}, "unknown fields added"),
    "version_change": ({}, "Apple's data changes while paging (a real out-of-band write)"),
    "notification_drop": (
        {"type": "a notificationType (any by default)"},
        "a notification to the MDM is never sent (TEST_NOTIFICATION: client/config answers 9728)",
    ),
    "notification_delay": (
        {"type": "a notificationType (any by default)", "seconds": "how much later (default 1.0)"},
        "a notification to the MDM is sent later",
    ),
    "notification_duplicate": ({"type": "a notificationType (any by default)"}, "a notification to the MDM is sent twice (same notificationId)"),
}
FAULT_COMMON = {
    "endpoint": "path after /mdm/v2 (assets, assignments, users, client/config, status, lookup); any by default",
    "count": "how many matching requests it hits (until cleared by default)",
    "after": "skip the first N matching requests",
}
URL_FILE_SUFFIX = ".url"


def action_parameters(action: str) -> list[tuple[str, str]]:
    """``[(name, default or "required"), ...]`` of a control action, from the method itself."""
    from .server import Simulator

    method = getattr(Simulator, ACTIONS[action][0])
    params = []
    for name, p in inspect.signature(method).parameters.items():
        if name == "self":
            continue
        params.append(
            (name, "required" if p.default is inspect.Parameter.empty else json.dumps(p.default if not isinstance(p.default, tuple) else list(p.default)))
        )
    return params


def describe_actions() -> str:
    """The text of ``mdm vpp simulator actions``."""
    lines = ["change ACTION [NAME=VALUE ...]:"]
    for action, (_, doc) in ACTIONS.items():
        params = " ".join(f"{n}={d}" if d != "required" else f"{n}=(required)" for n, d in action_parameters(action))
        lines.append(f"  {action:<19} {doc}" + (f"\n  {'':<19} {params}" if params else ""))
    lines.append("fault KIND [NAME=VALUE ...] [--endpoint E] [--count N] [--after N]:")
    for kind, (fault_params, doc) in FAULTS.items():
        lines.append(f"  {kind:<19} {doc}" + "".join(f"\n  {'':<19} {n}: {d}" for n, d in fault_params.items()))
    lines.append("  " + "; ".join(f"--{n}: {d}" for n, d in FAULT_COMMON.items()))
    return "\n".join(lines)


#: parameters that are identifiers, never numbers: ``adam_id=1029705796`` is Apple's text id
TEXT_PARAMS = frozenset({"adam_id", "pricing_param", "serial_number", "client_user_id", "email", "managed_apple_id", "apple_id", "id", "name", "metadata"})


def parse_params(pairs: list[str], allowed: list[str], what: str) -> dict[str, Any]:
    """``["count=5", "supported_platforms=[\\"iOS\\"]"]`` -> values (JSON where it parses, else
    text); identifiers (:data:`TEXT_PARAMS`) stay text, so an adamId matches Apple's."""
    from mdm_core.errors import UsageError

    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"'{pair}' is not NAME=VALUE (see `mdm vpp simulator actions`)")
        if name not in allowed:
            raise UsageError(f"{what} takes no parameter '{name}'; it takes: {', '.join(allowed) or 'none'}")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
        if name in TEXT_PARAMS and not isinstance(values[name], str | None):
            values[name] = raw
    return values


def url_file(token_file: str | Path) -> Path:
    """Where ``serve`` writes its base URL: beside its token file."""
    path = Path(token_file)
    return path.with_name(path.name + URL_FILE_SUFFIX)


def control_url(url: str | None, token_file: str | Path) -> str:
    """The simulator's root URL, from ``--url`` or from what ``serve`` wrote."""
    from mdm_core.errors import UsageError

    if url is None:
        where = url_file(token_file)
        try:
            url = where.read_text(encoding="utf-8").strip()
        except OSError:
            raise UsageError(f"no running simulator known ({where} is missing): start one with `mdm vpp simulator serve`, or give --url") from None
    url = url.rstrip("/")
    return url[: -len("/mdm/v2")] if url.endswith("/mdm/v2") else url


def call(root: str, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One control request; an unreachable simulator or a refusal is a one-line error."""
    import requests

    from mdm_core.errors import MdmError

    try:
        response = requests.request(method, f"{root}/_sim/{route}", json=body, timeout=30)
    except requests.RequestException as exc:
        raise MdmError(f"cannot reach the simulator at {root} ({type(exc).__name__}): is `mdm vpp simulator serve` running there?") from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        raise MdmError(f"the simulator refused: {data.get('error') or response.status_code}")
    return data
