"""A faithful local Apple Apps and Books (VPP) v2 service for development, tests and demos.

Stdlib only. `Simulator` seeds a location deterministically (assets, device serials,
users, assignments), serves Apple's v2 contract under `/mdm/v2` and the content
metadata lookup at `/WebObjects/MZStorePlatform.woa/wa/lookup`, and offers
out-of-band changes and fault injection from Python and over HTTP::

    with Simulator(seed=1, page_size=437) as sim:
        requests.get(sim.base_url + "/assets",
                     headers={"Authorization": f"Bearer {sim.token}"})
        sim.purchase(count=5); sim.faults.add("rate_limit", endpoint="assets", count=1)

Served v2 endpoints: service/config (no auth), client/config (GET/POST), assets,
assignments, users (paged: server-chosen page size, `nextPageIndex` only when
another page exists, 9650 out of range, per-dataset `versionId`, `sinceVersionId`
deltas on assignments and users), assets/associate|disassociate|revoke and
users/create|update|retire (async: PENDING for `async_delay` seconds, processed
lazily on the next request), status?eventId=.

Notifications (`notifications.py`): once an MDM sets `notificationUrl`,
`notificationAuthToken` and `notificationTypes` with POST client/config, the simulator
posts TEST_NOTIFICATION at once (and answers 9728 if that delivery fails; plain http is
accepted for loopback URLs only), ASSET_MANAGEMENT when an associate, disassociate or
revoke event ends (SUCCESS and FAILURE with Apple's error), USER_MANAGEMENT when a users
create, update or retire event ends, USER_ASSOCIATED when an invitation is accepted, and
ASSET_COUNT when a purchase, a transfer or a refund changes a total. Events then run as soon
as they are due. Delivery retries like Apple's (3 attempts; `notification_retry_delays`,
default 60 s and 240 s), and `sim.notifications()` lists every delivery.

Control API (no auth, loopback clients only), JSON in and out:

(From the command line: ``mdm vpp simulator change|fault|actions``, see the README.)

- ``POST /_sim/faults``    arm a fault: {"kind", "endpoint"?, "count"?, "after"?, ...params}
  kinds: rate_limit (retry_after), server_error (status, body "9603"|"empty",
  retry_after), error_200 (error_number), slow (seconds), drop, truncated_json,
  malformed_json (body), missing_field (field), extra_field (fields),
  version_change, reverse_records; notification faults notification_drop,
  notification_delay (seconds) and notification_duplicate take "type" (a notificationType)
  instead of "endpoint"; the state faults expire_token, revoke_token, restore_token and
  claim_by_other_mdm (id, name, metadata) are accepted too. Answers 201 {"fault": {...}}.
- ``GET /_sim/faults``     armed faults and hit counts
- ``DELETE /_sim/faults``  disarm everything and make the token valid again
- ``POST /_sim/change``    {"action": ..., ...kwargs}; actions: purchase, assign,
  remove, retire_user, create_user, accept_invite, remove_asset (refund),
  transfer (adam_id, count: licenses in or out), mutate_fraction, expire_token, revoke_token, claim_by_other_mdm, restore_token
- ``GET /_sim/snapshot``   {"assets": [...], "assignments": [[adamId, pricingParam,
  "serialNumber"|"clientUserId", value], ...], "users": {...}, "versions": {...}}
- ``GET /_sim/notifications``  every notification sent: notificationId, type, payload,
  status (queued, delivered, failed, dropped), attempts and the answers it got
- ``GET /_sim/versions``   current versionId per dataset
- ``GET /_sim/token``      {"token", "tokenExpirationDate", "status"}

Apple's limits: at most 5 requests of the token at once (more get 9646 / HTTP 429; see
``Simulator.in_flight``). Metadata: public apps without the cookie, custom apps
(``purchase(custom=True)``) only with it, ``platform=macappstore`` for a universal app's Mac
entry. ``purchase(unlimited=True)``: an unlimited asset (the ``unlimited`` parameter of
``/assets``). ``fail_next_event(type, error_number=9603, silent=False)``: the next event of a
type fails naming its targets (or completes with ``numCompleted`` 0).

Run it with ``python -m plugins.vpp.simulator --port 8800`` (see `cli.py`).
The token never appears in logs, errors or repr().
"""

from __future__ import annotations

from .errors import ERROR_MESSAGES, ApiError
from .faults import KINDS as FAULT_KINDS
from .faults import Fault, Faults
from .models import DEVICE, USER
from .server import Simulator
from .state import DEFAULT_LIMITS, SimState

DEFAULT_PAGE_SIZE = 437

__all__ = ["ApiError", "DEFAULT_LIMITS", "DEFAULT_PAGE_SIZE", "DEVICE", "ERROR_MESSAGES", "FAULT_KINDS", "Fault", "Faults", "SimState", "Simulator", "USER"]
