"""Reading the files people name on the command line or in the configuration (a token, a key,
an import, a password, the configuration itself) with a size bound: a wrong path (``/dev/zero``,
a disk image) is a one-line error, never a process that grows until the kernel kills it."""

from __future__ import annotations

import os
from pathlib import Path

#: The bounds of each kind of file (a bound is far above any real file of its kind).
SMALL_SECRET_FILE = 64 * 1024  # a token, a key, a password: a few hundred bytes
CONFIG_FILE = 4 * 1024 * 1024  # conf/mdm.toml: a few KB
IMPORT_FILE = 256 * 1024 * 1024  # an import of a million devices is about 60 MB
READ_PIECE = 1024 * 1024  # read_bounded reads this much at a time


class FileTooLarge(Exception):
    """The file holds more than ``limit`` bytes (nothing more than that was read)."""

    def __init__(self, path: str | os.PathLike[str], limit: int) -> None:
        super().__init__(f"{os.fspath(path)} is larger than {describe_size(limit)}")
        self.limit = limit

    @property
    def size(self) -> str:
        """The bound, for a message: ``64 KB``, ``256 MB``."""
        return describe_size(self.limit)


def describe_size(limit: int) -> str:
    """``64 KB``, ``4 MB``: a bound for people."""
    return f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them; :class:`FileTooLarge` when it holds more.

    A regular file larger than the bound fails before it is read; a device or a pipe
    (``/dev/zero``) is read up to the bound. ``OSError`` (missing, a directory, no permission)
    is the caller's to word."""
    chunks: list[bytes] = []
    total = 0
    with open(Path(path), "rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise FileTooLarge(path, limit)
        while total <= limit:  # by pieces: one read(limit + 1) allocated the whole bound (256 MB for an import) whatever the size
            chunk = handle.read(min(READ_PIECE, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > limit:
        raise FileTooLarge(path, limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def private_folder(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` for its owner only (mode 0700), and so each missing folder
    above it (``mkdir(parents=True, mode=0o700)`` gives those the default mode: a ``var/``
    holding a key's folder stayed 0755). A folder that exists keeps its mode."""
    target = Path(path)
    missing = []
    folder = target
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return target
