"""Times as the other apps write them in their chat files (local time, as they do)."""

from __future__ import annotations

from datetime import UTC, datetime

_MONTHS = "January February March April May June July August September October November December"
MONTHS = _MONTHS.split()


def local_time(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0)


def st_send_date(seconds: float) -> str:
    """SillyTavern's `getMessageTimeStamp()`: 'June 19, 2023 2:20pm'."""
    t = local_time(seconds)
    hour = t.hour % 12 or 12
    return f"{MONTHS[t.month - 1]} {t.day}, {t.year} {hour}:{t.minute:02d}{'pm' if t.hour >= 12 else 'am'}"


def st_create_date(seconds: float) -> str:
    """SillyTavern's `humanizedDateTime()`: '2024-09-27@14h05m01s'."""
    t = local_time(seconds)
    return f"{t.year}-{t.month:02d}-{t.day:02d}@{t.hour:02d}h{t.minute:02d}m{t.second:02d}s"


def iso_z(seconds: float) -> str:
    """JavaScript's `Date.toISOString()` (ST's gen_started/gen_finished): UTC, milliseconds."""
    try:
        t = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        t = datetime.fromtimestamp(0, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def tgw_timestamp(seconds: float) -> str:
    """text-generation-webui's `get_current_timestamp()`: '%b %d, %Y %H:%M' (English months)."""
    t = local_time(seconds)
    return f"{MONTHS[t.month - 1][:3]} {t.day:02d}, {t.year} {t.hour:02d}:{t.minute:02d}"
