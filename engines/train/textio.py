"""Read text files whose encoding is unknown: UTF-8 (with or without BOM), UTF-16, GB18030/GBK."""

from __future__ import annotations

from pathlib import Path

from engines.train import DatasetError

_BOMS = [
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
]


def detect_encoding(raw: bytes) -> str:
    """The encoding `raw` decodes with: a BOM's, else UTF-8, else GB18030 (a superset of GBK and GB2312)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    for encoding in ("utf-8", "gb18030"):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    raise UnicodeDecodeError("utf-8/gb18030", raw[:1], 0, 1, "no known encoding fits")


def read_text(path: str | Path) -> str:
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"Cannot read {path} ({exc.strerror}); check the path.") from None
    try:
        encoding = detect_encoding(raw)
    except UnicodeDecodeError:
        raise DatasetError(
            f"{path} is neither UTF-8 nor GB18030/GBK text; convert it to UTF-8 first."
        ) from None
    return raw.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
