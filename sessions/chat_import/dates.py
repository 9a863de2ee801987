"""The dates other apps write into their chat files, read as seconds since the epoch."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sessions.chat_export import MONTHS

_MONTH = {name.lower(): i for i, name in enumerate(MONTHS, 1)} | {
    name[:3].lower(): i for i, name in enumerate(MONTHS, 1)
}
# (?<!\w): the month starts a word. The leftmost match does anyway, and without it a long run of
# letters is scanned again from each of its letters (a megabyte of them: hours).
_MERIDIEM = re.compile(r"(?<!\w)(\w+)\s(\d{1,2}),\s(\d{4})\s(\d{1,2}):(\d{1,2})(am|pm)", re.I)
_HUMANIZED = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) ?@(\d{1,2})h ?(\d{1,2})m ?(\d{1,2})s")
_TGW_TIME = re.compile(r"([A-Za-z]{3}) (\d{1,2}), (\d{4}) (\d{1,2}):(\d{2})$")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from the dates these apps write: SillyTavern's send_date
    ('June 19, 2023 2:20pm', ISO 8601, '2024-7-12@01h31m37s', '2024-6-5 @14h 56m 50s 682ms',
    Unix milliseconds: what its `timestampToMoment` reads) and text-generation-webui's
    'Sep 27, 2024 14:05'. None when it is none of them."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) / 1000 if 0 <= value < 1e15 else None
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        if value.isdigit():
            return parse_time(int(value))
        if match := _MERIDIEM.search(value):
            month, day, year, hour, minute, half = match.groups()
            hour24 = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
            number = _MONTH.get(month.lower())
            return _when(int(year), number, int(day), hour24, int(minute)) if number else None
        if match := _HUMANIZED.search(value):
            return _when(*(int(part) for part in match.groups()))
        if match := _TGW_TIME.match(value):
            month, day, year, hour, minute = match.groups()
            number = _MONTH.get(month.lower())
            return _when(int(year), number, int(day), int(hour), int(minute)) if number else None
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _when(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second).timestamp()  # local, as written
