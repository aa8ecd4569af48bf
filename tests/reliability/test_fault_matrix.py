"""Fault matrix: every fault the simulator can inject, on full and incremental syncs, on the
first page and on later pages. Each sync either converges (report ok, mirror == Apple) after
retries, or fails cleanly: a typed error, the run recorded with its error, the mirror
byte-for-byte unchanged, and the account telling the user what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from plugins.vpp.apple.errors import VppError
from plugins.vpp.models import VppAccount
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import SkippedWaits, apple_state, mirror_state, skip_client_waits

from .conftest import account_info, apple_changes, assert_converged, count_figure, inner_token, mirror_dump, runs, stage_rows

pytestmark = pytest.mark.slow  # every fault at several positions: retries, timeouts, Retry-After waits

#: Where a fault lands: (endpoint, matching requests to let through first).
POSITIONS = {
    "assets-first-page": ("assets", 0),
    "assignments-later-page": ("assignments", 1),
    "users-later-page": ("users", 1),
}
MODES = ("full", "incremental")
#: (mode, position) pairs tried for each fault: the first page of a full sync, a later page of
#: a full sync, and a later page of an incremental sync's delta traversal (or per-asset re-read).
COMBOS = [("full", "assets-first-page"), ("full", "users-later-page"), ("incremental", "assignments-later-page")]
#: Faults whose real wait (Retry-After: 1) makes them slow are tried on fewer combinations.
SLOW_COMBOS = [("full", "assignments-later-page"), ("incremental", "users-later-page")]

#: Faults that fire once (or a few times): retries / restarts absorb them and the sync converges.
TRANSIENT: dict[str, dict[str, Any]] = {
    "rate_limit-retry_after": dict(kind="rate_limit", retry_after=1, count=1),
    "rate_limit-no_retry_after": dict(kind="rate_limit", count=1),
    "http500-retry_after": dict(kind="server_error", status=500, retry_after=1, count=1),
    "http503-no_retry_after": dict(kind="server_error", status=503, count=1),
    "http503-retry_after-twice": dict(kind="server_error", status=503, retry_after=0, count=2),
    "http500-empty_body": dict(kind="server_error", status=500, body="empty", count=1),
    "error_200-9603": dict(kind="error_200", error_number=9603, count=1),
    "timeout": dict(kind="slow", seconds=1.5, count=1),
    "dropped-connection": dict(kind="drop", count=1),
    "extra_field": dict(kind="extra_field", count=None),
    "extra_field-custom": dict(kind="extra_field", fields={"newAppleField": {"x": [1]}, "assignedCount2": 7}, count=None),
    "version_change-once": dict(kind="version_change", count=1),
    "error_200-9650-once": dict(kind="error_200", error_number=9650, count=1),
}

#: Faults that do not go away (or are not retryable): the sync fails cleanly with this error type.
FATAL: dict[str, tuple[dict[str, Any], str]] = {
    "truncated_json": (dict(kind="truncated_json", count=1), "MalformedResponseError"),
    "malformed_json": (dict(kind="malformed_json", count=1), "MalformedResponseError"),
    "error_200-9622-token": (dict(kind="error_200", error_number=9622, count=1), "TokenInvalidError"),
    "error_200-9621-token": (dict(kind="error_200", error_number=9621, count=1), "TokenExpiredError"),
    "error_200-9625-token": (dict(kind="error_200", error_number=9625, count=1), "TokenRevokedError"),
    "error_200-9650-always": (dict(kind="error_200", error_number=9650, count=None), "BadPageIndexError"),
}

#: Missing required fields: per endpoint, a field its records cannot do without.
MISSING = {"assets": "assignedCount", "assignments": "adamId", "users": "clientUserId"}

#: Retryable faults that never stop: the retries run out (bounded), then the sync fails cleanly.
#: Slower (back-off), so tried on one position per mode.
EXHAUSTED: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "rate_limit-retry_after-always": (dict(kind="rate_limit", retry_after=1, count=None), "RateLimitedError", "full", "assignments-later-page"),
    "rate_limit-always": (dict(kind="rate_limit", count=None), "RateLimitedError", "incremental", "users-later-page"),
    "http503-always": (dict(kind="server_error", status=503, retry_after=0, count=None), "ServerError", "full", "users-later-page"),
    "http500-always": (dict(kind="server_error", status=500, count=None), "ServerError", "incremental", "assignments-later-page"),
    "error_200-9603-always": (dict(kind="error_200", error_number=9603, count=None), "ServerError", "full", "assets-first-page"),
    "timeout-always": (dict(kind="slow", seconds=1.0, count=None), "TransportError", "incremental", "assignments-later-page"),
    "drop-always": (dict(kind="drop", count=None), "TransportError", "full", "assignments-later-page"),
}

TOKEN_STATES = {"TokenInvalidError": "invalid", "TokenExpiredError": "expired", "TokenRevokedError": "revoked", "MdmConflictError": "taken_over"}


def _arm(sim: Any, position: str, spec: dict[str, Any]) -> Any:
    endpoint, after = POSITIONS[position]
    spec = dict(spec)
    kind, count = spec.pop("kind"), spec.pop("count")
    return sim.faults.add(kind, endpoint=endpoint, count=count, after=after, **spec)


def _prepare(request: pytest.FixtureRequest, mode: str) -> tuple[Any, Any]:
    """A host ready for a ``mode`` sync: never synced (full) or synced then changed (incremental)."""
    sim = request.getfixturevalue("small_sim")
    if mode == "full":
        host = request.getfixturevalue("school")
    else:
        host = request.getfixturevalue("synced")
        apple_changes(sim)
    return host, sim


def assert_failed_cleanly(host: Any, sim: Any, report: Mapping[str, Any], before: list[Any], error_type: str | tuple[str, ...]) -> None:
    """A typed error, recorded on the run; the mirror unchanged; the account says what to do."""
    expected = (error_type,) if isinstance(error_type, str) else error_type
    assert report["status"] == "error", report
    assert report["error_type"] in expected, report
    assert report["error"] and "\n" not in report["error"]
    assert sim.token not in report["error"] and inner_token(sim.token) not in report["error"]
    run = runs(host)[-1]
    assert (run["status"], run["error_type"]) == ("error", report["error_type"])
    assert run["error"] == report["error"] and run["finished_at"] is not None
    assert mirror_dump(host) == before, "a failed sync changed the mirror"
    assert stage_rows(host) == 0
    info = account_info(host)
    if report["error_type"] in TOKEN_STATES:
        assert info["token_state"] == TOKEN_STATES[report["error_type"]]
        assert info["paused"] is True
        assert "mdm vpp account set" in info["action"]
    else:
        assert info["token_state"] == "valid" and info["paused"] is False
        assert info["last_sync_result"].startswith("error: ")


def assert_ok(host: Any, sim: Any, report: Mapping[str, Any]) -> None:
    assert report["status"] == "ok", report
    assert runs(host)[-1]["status"] == "ok"
    assert account_info(host)["last_sync_result"].startswith("ok")
    sim.faults.clear()
    assert_converged(host, sim)


@pytest.fixture(autouse=True)
def client_waits(monkeypatch: pytest.MonkeyPatch) -> SkippedWaits:
    """The client's waits (Retry-After, back-off) are recorded and skipped on a clock that counts
    them against the same bounds (``max_total_wait``); back-off without Retry-After starts at
    0.05 s instead of 1 s (the bounds are unchanged). Timeouts still take real time."""
    import functools

    from plugins.vpp import accounts
    from plugins.vpp.apple.transport import RetryPolicy

    monkeypatch.setattr(accounts, "RetryPolicy", functools.partial(RetryPolicy, base_delay=0.05))
    return skip_client_waits(monkeypatch)


def _transient_cases() -> list[Any]:
    cases = []
    for fault, spec in TRANSIENT.items():
        for mode, position in SLOW_COMBOS if spec.get("retry_after") else COMBOS:
            cases.append(pytest.param(fault, mode, position, id=f"{fault}-{mode}-{position}"))
    return cases


@pytest.mark.parametrize("fault, mode, position", _transient_cases())
def test_transient_fault_converges(request: pytest.FixtureRequest, client_waits: SkippedWaits, fault: str, mode: str, position: str) -> None:
    host, sim = _prepare(request, mode)
    armed = _arm(sim, position, TRANSIENT[fault])
    report = sync_account(host, "school", full=False)
    count_figure("faults_tried")
    assert armed.fired >= 1, "the fault never fired: the case proves nothing"
    if TRANSIENT[fault].get("retry_after") is not None:
        # The wait is counted from Apple's answer (the per-token back-off is a deadline), so
        # it may be a few milliseconds short of what Apple asked when it starts.
        asked = TRANSIENT[fault]["retry_after"]
        assert client_waits.waited_at_least(asked) >= armed.fired, f"the client did not wait as Retry-After asked ({asked} s): {client_waits.waits}"
    if "9650" not in fault:
        assert report["mode"] == mode
    if fault.startswith("version_change"):
        # The write lands after the faulted page was built: a traversal that read every page
        # before it is a consistent (older) state, so convergence is checked on the next sync.
        assert report["status"] == "ok", report
        sim.faults.clear()
        report = sync_account(host, "school")
    assert_ok(host, sim, report)


@pytest.mark.parametrize("mode, position", COMBOS)
@pytest.mark.parametrize("fault", [*FATAL, "missing_field"])
def test_fatal_fault_fails_cleanly(request: pytest.FixtureRequest, fault: str, mode: str, position: str) -> None:
    host, sim = _prepare(request, mode)
    if fault == "missing_field":
        spec, error_type = dict(kind="missing_field", field=MISSING[POSITIONS[position][0]], count=None), "MalformedResponseError"
    else:
        spec, error_type = FATAL[fault]
    before = mirror_dump(host)
    armed = _arm(sim, position, spec)
    report = sync_account(host, "school")
    count_figure("faults_tried")
    assert armed.fired >= 1
    assert_failed_cleanly(host, sim, report, before, error_type)
    # once the fault is gone (and the user acted on a token error), the next sync converges
    sim.faults.clear()
    assert_ok(host, sim, sync_account(host, "school"))


@pytest.mark.parametrize("mode, position", COMBOS)
def test_data_changing_at_every_page(request: pytest.FixtureRequest, mode: str, position: str) -> None:
    """A busy location (a real write after every page): the first page's versionId is kept and
    each traversal read to the end (issue 12 point 2). The sync either ends ok with nothing lost
    and nothing Apple does not have, or, when counts keep moving under the re-reads, fails
    cleanly; the next sync converges."""
    host, sim = _prepare(request, mode)
    before_sync = mirror_dump(host)
    apple_before = apple_state(sim)
    armed = _arm(sim, position, dict(kind="version_change", count=None))
    report = sync_account(host, "school")
    count_figure("faults_tried")
    assert armed.fired >= 1
    if report["status"] == "ok":
        mirror, apple = mirror_state(host), apple_state(sim)
        for part in ("assignments", "users"):  # the writes only add and update: nothing may be lost, nothing invented
            assert set(apple_before[part]) <= set(mirror[part]) <= set(apple[part]), part
        assert set(mirror["assets"]) == set(apple["assets"])
    else:
        assert_failed_cleanly(host, sim, report, before_sync, "DataChangedError")
    sim.faults.clear()
    assert_ok(host, sim, sync_account(host, "school"))


@pytest.mark.parametrize("fault", EXHAUSTED)
def test_retries_run_out_then_fail_cleanly(request: pytest.FixtureRequest, client_waits: SkippedWaits, fault: str) -> None:
    spec, error_type, mode, position = EXHAUSTED[fault]
    host, sim = _prepare(request, mode)
    before = mirror_dump(host)
    armed = _arm(sim, position, spec)
    report = sync_account(host, "school")
    count_figure("faults_tried")
    # bounded: max_attempts (3) per request, at most 5 page requests in flight
    assert 2 <= armed.fired <= 3 * 5, armed
    if spec.get("retry_after"):
        assert client_waits.waited_at_least(spec["retry_after"]) >= 1, f"the client did not wait as Retry-After asked: {client_waits.waits}"
    assert_failed_cleanly(host, sim, report, before, error_type)
    sim.faults.clear()
    assert_ok(host, sim, sync_account(host, "school"))


@pytest.mark.parametrize("column", ["assignments_version_id", "users_version_id"])
def test_invalid_stored_version_id_9721_falls_back_to_full(synced: Any, small_sim: Any, column: str) -> None:
    """A corrupt stored versionId makes Apple answer 9721; the sync reads everything again."""
    synced.db.run_write(lambda s: s.execute(update(VppAccount).where(col(VppAccount.name) == "school").values({column: "corrupt-version-id"})))
    apple_changes(small_sim)
    report = sync_account(synced, "school")
    count_figure("faults_tried")
    assert report["status"] == "ok" and report["mode"] == "full", report
    assert_converged(synced, small_sim)
    # the fresh versionId is stored: the next sync is incremental again
    small_sim.create_user()
    again = sync_account(synced, "school")
    assert (again["status"], again["mode"]) == ("ok", "incremental")
    assert_converged(synced, small_sim)


def test_9721_then_failure_of_the_full_fallback_keeps_the_mirror(synced: Any, small_sim: Any) -> None:
    synced.db.run_write(lambda s: s.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(assignments_version_id="corrupt")))
    apple_changes(small_sim)
    before = mirror_dump(synced)
    small_sim.faults.add("malformed_json", endpoint="assignments", after=1, count=None)
    report = sync_account(synced, "school")
    count_figure("faults_tried")
    assert_failed_cleanly(synced, small_sim, report, before, "MalformedResponseError")
    assert report["mode"] == "full"


@pytest.mark.parametrize(
    "state_fault, error_type",
    [
        ("expire_token", "TokenExpiredError"),
        ("revoke_token", "TokenRevokedError"),
        ("claim_by_other_mdm", "MdmConflictError"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_token_state_faults_fail_cleanly(request: pytest.FixtureRequest, state_fault: str, error_type: str, mode: str) -> None:
    host, sim = _prepare(request, mode)
    before = mirror_dump(host)
    getattr(sim, state_fault)()
    report = sync_account(host, "school")
    count_figure("faults_tried")
    assert_failed_cleanly(host, sim, report, before, error_type)


def test_unexpected_exception_is_recorded_and_the_mirror_unchanged(synced: Any, small_sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (not a VppError) during the apply transaction rolls it back and is reported."""
    from plugins.vpp.sync import apply

    apple_changes(small_sim)
    before = mirror_dump(synced)

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom in apply")

    monkeypatch.setattr(apply.MirrorUpdate, "_apply_licenses", broken)
    report = sync_account(synced, "school")
    count_figure("faults_tried")
    assert_failed_cleanly(synced, small_sim, report, before, "RuntimeError")
    monkeypatch.undo()
    assert_ok(synced, small_sim, sync_account(synced, "school"))


def test_errors_are_vpp_errors() -> None:
    """Every error type the matrix expects from Apple's side is a VppError subclass."""
    from plugins.vpp.apple import errors
    from plugins.vpp.sync.read import DataChangedError

    names = {e for _, e in FATAL.values()} | {v[1] for v in EXHAUSTED.values()} | {"MalformedResponseError", "MdmConflictError", "DataChangedError"}
    for name in names:
        cls = getattr(errors, name, None) or (DataChangedError if name == "DataChangedError" else None)
        assert cls is not None and issubclass(cls, VppError), name


@pytest.mark.parametrize("mode", MODES)
def test_assignments_changing_while_paging_also_refresh_asset_counts(request: pytest.FixtureRequest, mode: str) -> None:
    """A versionId change on page 2 of /assignments (an assignment made in the portal mid-sync)."""
    host, sim = _prepare(request, mode)
    armed = sim.faults.add("version_change", endpoint="assignments", count=1, after=1)
    report = sync_account(host, "school")
    assert armed.fired == 1 and report["status"] == "ok", report
    sim.faults.clear()
    assert_converged(host, sim)
