"""Prophesee-style ``%`` text headers, shared by the DAT and RAW (EVT 2.0 / 3.0) readers.

A header is the run of lines at the start of a file that begin with ``%``. The
binary data starts at the first line that does not — or right after a ``% end``
line, which newer RAW files write so that data whose first byte happens to be
0x25 (``%``) is not taken for one more header line.

Each line ``% key value`` becomes ``header[key] = value``: the key is the first
word after the ``%``, the value the rest of the line with the blanks around it
stripped, kept raw (``% format EVT3;height=720;width=1280`` gives
``{"format": "EVT3;height=720;width=1280"}``; readers interpret values). A line
with a key only gets ``""``; of a repeated key the first value wins.
"""

from __future__ import annotations

from pathlib import Path

MARKER = b"%"
END_LINE = b"% end"
MAX_LINE_BYTES = 1 << 16
"""Longest header line read in one go (a bound, so binary data without newlines stays cheap)."""


def parse_percent_header(path: Path) -> tuple[int, dict[str, str]]:
    """Return ``(data_offset, header)``: where the binary data starts, and the header fields."""
    header: dict[str, str] = {}
    offset = 0
    with path.open("rb") as f:
        while True:
            line = f.readline(MAX_LINE_BYTES)
            if not line.startswith(MARKER):
                return offset, header
            offset += len(line)
            key, value = split_line(line)
            if key:
                header.setdefault(key, value)
            if line.rstrip() == END_LINE:
                return offset, header


def split_line(line: bytes) -> tuple[str, str]:
    """``b"% key  some value\\n"`` → ``("key", "some value")``."""
    text = line[len(MARKER) :].decode("latin-1").strip()
    key, _, value = text.partition(" ")
    return key, value.strip()
