"""Apple's Apps and Books (VPP) v2 web service, as this project uses it.

- ``errors``: the typed errors every request can raise (Apple's ``errorNumber``s and HTTP statuses).
- ``protocol``: responses and records checked and parsed (no I/O).
- ``transport``: HTTP with retries, back-off, limits, Service Config and paging.
- ``client``: the endpoints (``AppsBooksClient``).
- ``stoken``: the ``.vpptoken`` file and its secret.

Nothing here touches the database; the rest of the VPP plugin builds on it.
"""
