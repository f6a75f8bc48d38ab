"""Reading the files a user names (configs, query files, pools): regular files only, UTF-8 text.

``read_input_bytes`` opens without blocking and checks what it opened before reading, so a FIFO,
a device or a directory is refused with one line instead of hanging or reading forever; a file
swapped for one of those between a check and the open is caught too (the check is on the opened
descriptor). ``decode_utf8`` turns bytes into text or says which encoding the file seems to be in
and how to convert it.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

from iapo.errors import InputError

__all__ = ["decode_utf8", "not_a_file", "read_input_bytes", "read_input_text"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_a_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a directory", "a named pipe
    (FIFO)", …), else None. A quick check for naming the config that points there; the read
    itself checks again, on what it opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def read_input_bytes(
    path: str | Path, *, error: type[InputError], what: str, field: str | None = None
) -> bytes:
    """The bytes of the regular file at ``path``; anything else raises ``error`` (one line naming
    the file, ``field`` and the fix). ``what`` names the expected file ("a YAML config")."""
    source = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error("no such file: check the path", source=source, field=field) from None
    except IsADirectoryError:
        raise error(f"is a directory: give {what}", source=source, field=field) from None
    except OSError as exc:
        raise error(f"cannot read it ({exc.strerror})", source=source, field=field) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"is {_kind(mode)}, not a file: give {what}", source=source, field=field)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    except OSError as exc:
        raise error(f"cannot read it ({exc.strerror})", source=source, field=field) from None
    finally:
        os.close(fd)


_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def decode_utf8(
    raw: bytes, *, error: type[InputError], source: str, field: str | None = None
) -> str:
    """``raw`` as UTF-8 text (a leading BOM is dropped); otherwise ``error`` naming
    ``source:line`` and the encoding the bytes seem to be in, with the conversion to make."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        seems = next((name for bom, name in _BOMS if raw.startswith(bom)), None)
        if seems is None and raw[:2].count(0) == 1:  # ASCII in UTF-16 without a BOM
            seems = "UTF-16"
        line = raw[: exc.start].count(b"\n") + 1
        if seems:
            fix = f"it looks like {seems}: convert it (iconv -f {seems} -t UTF-8)"
        else:
            fix = (
                f"byte 0x{raw[exc.start]:02x} is not UTF-8, maybe Latin-1 or "
                "Windows-1252: convert it (iconv -f LATIN1 -t UTF-8)"
            )
        raise error(
            f"is not UTF-8 text: {fix} and save it as UTF-8", source=f"{source}:{line}", field=field
        ) from None


def read_input_text(
    path: str | Path, *, error: type[InputError], what: str, field: str | None = None
) -> str:
    """:func:`read_input_bytes` then :func:`decode_utf8`."""
    raw = read_input_bytes(path, error=error, what=what, field=field)
    return decode_utf8(raw, error=error, source=str(path), field=field)
