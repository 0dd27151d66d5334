"""The platform's clock. Rules that count days (minimum days in pilot, freeze windows) read it
here, so tests and demos can move it: EDUMLOPS_CLOCK_OFFSET_DAYS shifts it, in this process and
in workers started with the same environment."""

from __future__ import annotations

import datetime as dt
import os

from django.utils import timezone


def offset() -> dt.timedelta:
    return dt.timedelta(days=float(os.environ.get("EDUMLOPS_CLOCK_OFFSET_DAYS", "0") or 0))


def now() -> dt.datetime:
    return timezone.now() + offset()


def today() -> dt.date:
    return timezone.localdate(now())
