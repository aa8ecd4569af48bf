"""uvicorn's HTTP/1.1 protocol answering an over-long request line or headers in one line.

A search pasted whole into the URL (``/devices?q=`` and 120 KB), or a cookie grown too large,
made uvicorn's h11 protocol give up on the request: a 400 saying "Invalid HTTP request
received." written as the socket was closed with the rest of the request unread, which the
client saw as a connection reset, or, when the request arrived in one piece, the request served
(a sign-in redirect carrying the 120 KB). :class:`BoundedH11Protocol` measures the request's
head itself, however it arrives: over :data:`MAX_HEAD` bytes it answers 414 (the request line)
or 431 (the headers) with one line (on the API, its JSON ``{"error": ...}``), then reads and
drops what the client still sends, so that the answer is read before the connection closes
(imported with uvicorn, when serving).
"""

from __future__ import annotations

import json
import re

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: the most bytes a request line and its headers may take together
MAX_HEAD = 64 * 1024
#: how long, and how much, a refused client's request is read and dropped before closing
DRAIN_SECONDS = 5.0
DRAIN_BYTES = 16 * 1024 * 1024

REFUSALS = {
    414: ("URI Too Long", "the requested URL is too long (over {} KiB): shorten it, e.g. a search with fewer words"),
    431: ("Request Header Fields Too Large", "the request's headers are too long (over {} KiB): clear this site's cookies in the browser and try again"),
}


def over_long(head: bytes, limit: int = MAX_HEAD) -> int | None:
    """414 when the request line in ``head`` (what has arrived of a request) is over ``limit``
    bytes, 431 when the request line and headers are, else ``None`` (the head fits so far)."""
    end = head.find(b"\r\n\r\n")
    size = len(head) if end < 0 else end
    if size <= limit:
        return None
    line = head.find(b"\r\n")
    return 414 if line < 0 or line > limit else 431


#: the scheme and authority of an absolute-form request target (``GET http://host/api/v1/... HTTP/1.1``)
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]*")


def for_api(head: bytes) -> bool:
    """True when the request whose ``head`` arrived asks for the API (its path under ``/api/v1``),
    its target in origin form (``/api/v1/...``) or absolute form (``http://host/api/v1/...``, as
    sent to a proxy: it answered a text 414)."""
    from .app import API_PREFIX

    target = head.partition(b" ")[2]
    if absolute := _ABSOLUTE.match(target):
        target = target[absolute.end() :]
    prefix = API_PREFIX.encode()
    return target.startswith(prefix) and target[len(prefix) : len(prefix) + 1] in (b"/", b"?", b" ", b"\r", b"")


def refusal(status: int, limit: int = MAX_HEAD, *, api: bool = False) -> bytes:
    """The whole HTTP answer for ``status`` (:data:`REFUSALS`): one line (on the API, the API's
    ``{"error": ...}``), then the connection closes."""
    reason, text = REFUSALS[status]
    said = text.format(limit // 1024)
    body, kind = (json.dumps({"error": said}).encode(), "application/json") if api else ((said + "\n").encode(), "text/plain; charset=utf-8")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the request's head bounded (:func:`over_long`)."""

    dropped: int | None = None  # bytes read and dropped since the refusal; None: not refused

    def data_received(self, data: bytes) -> None:
        if self.dropped is not None:
            self.dropped += len(data)
            if self.dropped > DRAIN_BYTES:
                self.transport.close()
            return
        if self.conn.their_state is h11.IDLE:  # reading a request's head (not its body)
            head = self.conn.trailing_data[0] + data
            status = over_long(head)
            if status is not None:
                self._refuse(status, for_api(head))
                return
        super().data_received(data)

    def _refuse(self, status: int, api: bool) -> None:
        self.dropped = 0
        self.transport.write(refusal(status, api=api))
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then the end, and closes
        self.loop.call_later(DRAIN_SECONDS, self.transport.close)

    def eof_received(self) -> None:
        if self.dropped is not None:
            self.transport.close()

    def shutdown(self) -> None:
        if self.dropped is not None:
            self.transport.close()
        else:
            super().shutdown()
