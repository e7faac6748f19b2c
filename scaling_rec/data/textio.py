"""Reading data files as UTF-8 text and integer fields as int64, with errors that name file, line and field."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from scaling_rec.errors import DataFormatError

_INT64 = np.iinfo(np.int64)


def _not_utf8(where: str, e: UnicodeDecodeError) -> DataFormatError:
    return DataFormatError(
        f"{where}: byte 0x{e.object[e.start]:02x} at column {e.start + 1} is not UTF-8 text; data files must be "
        "UTF-8 (re-encode the file, e.g. `iconv -f latin1 -t utf-8`, or fix the byte)."
    )


def decode_utf8(data: bytes, where: str, first_line: int = 1) -> str:
    """`data` as UTF-8 text; DataFormatError naming `where`:line (`data` starts at line `first_line` of the file)
    and the column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line_no = data.count(b"\n", 0, e.start) + first_line
        e.start -= line_start
        e.object = e.object[line_start:]
        raise _not_utf8(f"{where}:{line_no}", e) from None


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line with its newline) of a UTF-8 text file; DataFormatError at a bad byte."""
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(f"{path}:{line_no}", e) from None


def int64_problem(text: str) -> str | None:
    """Why `text` is not an int64 ('not an integer' / 'does not fit int64'), or None when it is one."""
    try:
        value = int(text)
    except ValueError:
        return "is not an integer"
    return None if _INT64.min <= value <= _INT64.max else "does not fit int64"


def shown(text: str, limit: int = 24) -> str:
    """`text` quoted for a message, cut to `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
