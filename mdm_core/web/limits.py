"""The size of what a client may send: every request body is bounded by ``[web]
request_max_bytes`` before any part of the application reads it.

Without it a form or a JSON body is read whole into memory (the sign-in form, which anyone
can post to, included), so one large request could exhaust the host's memory. A declared
``Content-Length`` over the limit is refused at once; a body sent without one (chunked) is
counted as it arrives and refused when it passes the limit. The answer is 413 with one line.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """A request body went past the limit while it was being read."""


class BodyLimit:
    """ASGI middleware: 413 for a request body larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if started:  # an answer already went out: nothing more can be said
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = (f"request body larger than {self.max_bytes} bytes ([web] request_max_bytes): send less\n").encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
