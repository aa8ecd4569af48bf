"""Syncing one VPP account: Apple's state into the mirror tables.

- ``run``: the entry points (``sync_account``, ``sync_accounts``): lock, sync-run record,
  fallback to a full sync, failures and token states, reports.
- ``read``: pages from Apple into the staging tables (every request to Apple happens here).
- ``apply``: staging versus mirror set differences, in the one write transaction.
- ``events``: the event payloads, cut into chunks.
"""
