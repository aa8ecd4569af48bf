"""A stand-in for Apple's artwork server (``is1-ssl.mzstatic.com``) for the browser test.

The simulator's metadata gives app icons Apple's real artwork URLs, which cannot be reached
from here. The browser test maps that host name to this HTTPS server on loopback (Chromium's
``--host-resolver-rules``, with a throw-away self-signed certificate the browser is told to
accept), so that the console's icons load exactly as they would from Apple: one plain
colour per app, the same for the same path.
"""

from __future__ import annotations

import hashlib
import http.server
import ssl
import struct
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

from tests.tls import self_signed_certificate

APPLE_ARTWORK_HOST = "is1-ssl.mzstatic.com"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain-colour PNG (8-bit RGB, no filter)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


def _certificate(folder: Path) -> tuple[Path, Path]:
    return self_signed_certificate(folder, APPLE_ARTWORK_HOST, stem=("artwork.pem", "artwork.key"), days=1)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        digest = hashlib.sha256(self.path.split("?")[0].encode()).digest()
        body = png(64, 64, (64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ArtworkServer:
    """HTTPS on a free loopback port; ``resolver_rule`` is the Chromium flag that sends Apple's
    artwork host here."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="mdm-artwork-")
        cert, key = _certificate(Path(self._folder.name))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="artwork", daemon=True)

    @property
    def resolver_rule(self) -> str:
        return f"--host-resolver-rules=MAP {APPLE_ARTWORK_HOST}:443 127.0.0.1:{self.port}"

    def __enter__(self) -> ArtworkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._folder.cleanup()
