"""Apple's Apps and Books notifications: what changed at Apple, as soon as it changed.

With ``[web] public_url`` set, each account gives Apple (``POST client/config``) a URL of
this host, ``{public_url}/apple/apps-books/notify/{account's mdmInfo id}``, and a random
secret that Apple sends back as ``Authorization: Bearer``. Three steps, three modules:

- :mod:`.configure`: the secret and the ``client/config`` request (account add, renewal,
  ``--take-over``, ``mdm vpp account set NAME --notifications on|off``).
- :mod:`.inbox`: receiving: the bearer checked in constant time, the body checked, then
  recorded in ``vpp_notification`` before the answer (a repeated ``notificationId`` is
  recorded once); a request following an Apple event learns from here that it ended.
- :mod:`.act`: acting on what was recorded, once, under the account's sync lock, with the
  same mirror changes and events a sync would make; a notification older than the last sync
  is already in the mirror and is skipped.

The scheduled sync stays the safety net for notifications Apple lost or never sends.
"""
