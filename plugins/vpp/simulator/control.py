"""The `/_sim/` control API: faults, out-of-band changes, snapshot, token (loopback only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .api import Response

if TYPE_CHECKING:
    from .server import Simulator


_STATE_FAULTS = ("expire_token", "revoke_token", "restore_token", "claim_by_other_mdm")


def _is_loopback(address: str) -> bool:
    return address == "::1" or address.startswith("127.") or address.startswith("::ffff:127.")


def snapshot_json(sim: Simulator) -> dict[str, Any]:
    """The JSON form of `Simulator.snapshot()` plus the current versionIds."""
    snap = sim.snapshot()
    return {
        "assets": [snap["assets"][key] for key in sorted(snap["assets"])],
        "assignments": sorted(list(row) for row in snap["assignments"]),
        "users": snap["users"],
        "versions": sim.versions(),
    }


def _actions(sim: Simulator) -> dict[str, Callable[..., Any]]:
    from .remote import ACTIONS

    return {action: getattr(sim, method) for action, (method, _) in ACTIONS.items()}


def _error(status: int, message: str) -> Response:
    return Response(status, {"error": message})


def handle_control(sim: Simulator, method: str, path: str, body: bytes, client_address: str) -> Response:
    """Answer one `/_sim/...` request."""
    if not _is_loopback(client_address):
        return _error(403, "the control API answers loopback clients only")
    route = path[len("/_sim/") :].strip("/") if path.startswith("/_sim/") else ""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return _error(400, "body must be JSON")
    if not isinstance(data, dict):
        return _error(400, "body must be a JSON object")
    try:
        if route == "faults" and method == "POST":
            kind = data.get("kind")
            if kind in _STATE_FAULTS:  # state faults are accepted here too
                data.pop("kind")
                getattr(sim.faults, kind)(**data)
                return Response(201, {"fault": {"kind": kind, "params": data}})
            fault = sim.faults.add(**data)
            return Response(201, {"fault": fault.describe()})
        if route == "faults" and method == "DELETE":
            sim.faults.clear()
            return Response(200, {"cleared": True})
        if route == "faults" and method == "GET":
            return Response(200, {"faults": [f.describe() for f in sim.faults.active], "hits": dict(sim.faults.hits)})
        if route == "change" and method == "POST":
            action = data.pop("action", None)
            handler = _actions(sim).get(action or "")
            if handler is None:
                return _error(400, f"unknown action {action!r}")
            result = handler(**data)
            return Response(200, {"action": action, "result": list(result) if isinstance(result, tuple) else result, "versions": sim.versions()})
        if route == "notifications" and method == "GET":
            return Response(200, {"notifications": sim.notifications()})
        if route == "snapshot" and method == "GET":
            return Response(200, snapshot_json(sim))
        if route == "versions" and method == "GET":
            return Response(200, sim.versions())
        if route == "token" and method == "GET":
            return Response(200, {"token": sim.token, "tokenExpirationDate": sim.token_expiration_date, "status": sim.token_status})
    except (TypeError, ValueError) as error:
        return _error(400, str(error))
    return _error(404, "unknown control route")
