"""The HTTP session of the Apps and Books client: the environment's proxy and CA-bundle
settings read once per origin, not at every request.

``requests`` looks them up again for each request (``HTTP(S)_PROXY``, ``NO_PROXY``,
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``: a scan of ``os.environ`` and a parse of the no-proxy
list), about 0.35 ms of interpreter time a page: a tenth of a page's download and parse, on
the threads that read pages. A client lives for one sync or one command, so the environment is
read when it first calls an origin, and a change of it applies from the next sync.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests

#: ``merge_environment_settings`` as ``requests`` calls it when the request sets none of these
_DEFAULTS: tuple[Any, ...] = (None, None, None)


class EnvOnceSession(requests.Session):
    """A ``requests.Session`` whose environment settings are resolved once per scheme and host."""

    def __init__(self) -> None:
        super().__init__()
        self._env_settings: dict[tuple[str, str], dict[str, Any]] = {}
        self._env_lock = threading.Lock()

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        """``requests``' own answer, kept per origin when the request brings no setting of its own."""
        if proxies or (stream, verify, cert) != _DEFAULTS:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc)
        settings = self._env_settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, None, None, None)
            with self._env_lock:
                self._env_settings.setdefault(key, settings)
        return {**settings, "proxies": dict(settings["proxies"])}  # requests may change the dict it is given
