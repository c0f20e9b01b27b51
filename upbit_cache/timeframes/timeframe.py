"""The one timeframe type: parsing, Upbit endpoints, alignment and divisibility."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from upbit_cache.errors import InvalidTimeframeError

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy as np
    import numpy.typing as npt

    Millis: TypeAlias = npt.NDArray[np.int64]

# numpy is imported inside the vectorised methods: the single-time ones below are plain
# Python, so a command that only needs a window (a hot screen-prep) never loads numpy.

Kind = Literal["second", "minute", "day", "week", "month", "year"]

SECOND_MS = 1_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# The Unix epoch is a Thursday; Upbit's weeks start on Monday 00:00 UTC.
_WEEK_OFFSET_MS = 4 * DAY_MS
_NATIVE_MINUTES = (1, 3, 5, 10, 15, 30, 60, 240)
# Calendar periods: (numpy unit, months per period). Months and years vary in length.
_CALENDAR = {"month": ("M", 1), "year": ("Y", 12)}


@dataclass(frozen=True)
class Timeframe:
    """A candle period such as 1s, 15m, 1h, 1d, 1M or 1y, aligned the way Upbit aligns it."""

    name: str
    kind: Kind
    count: int  # seconds for kind "second", minutes for "minute", days for "day", else 1

    @staticmethod
    def check_type(value: object, where: str = "a timeframe") -> None:
        """Refuse anything but a name (str) or a Timeframe where one timeframe goes."""
        if not isinstance(value, str | Timeframe):
            raise InvalidTimeframeError(
                f"{where} takes a timeframe such as '1h' (a str) or a Timeframe, "
                f"not {type(value).__name__} {value!r}"
            )

    @classmethod
    def parse(cls, text: str | Timeframe) -> Timeframe:
        """Parse one of SUPPORTED (`1m` is a minute, `1M` a month; a Timeframe is itself);
        raise on anything else."""
        cls.check_type(text)
        if isinstance(text, Timeframe):
            return text
        found = _BY_NAME.get(text.strip())
        if found is None:
            meant = _meant(text.strip())
            hint = f"did you mean {meant}?" if meant else f"use one of {' '.join(_BY_NAME)}"
            raise InvalidTimeframeError(f"unsupported timeframe {text!r}: {hint}")
        return found

    @classmethod
    def parse_list(cls, text: str) -> list[Timeframe]:
        """Parse a comma-separated list such as `15m,1h,4h`, without repeats; an empty item
        (`1h,,4h`, `1h,`) is refused, as a slip that would otherwise go unnoticed."""
        cls.check_type(text, "a list of timeframes")
        parts = str(text).split(",")
        if not text.strip() or not any(part.strip() for part in parts):
            raise InvalidTimeframeError(
                f"no timeframe given: use one or more of {' '.join(_BY_NAME)}"
            )
        if not all(part.strip() for part in parts):
            raise InvalidTimeframeError(
                f"empty timeframe in {text!r}: separate timeframes with one comma, e.g. 1h,4h"
            )
        return list(dict.fromkeys(cls.parse(part) for part in parts))

    def __str__(self) -> str:
        return self.name

    @property
    def fixed_ms(self) -> int | None:
        """The period length in ms, or None for months and years (they vary)."""
        if self.kind == "second":
            return self.count * SECOND_MS
        if self.kind == "minute":
            return self.count * MINUTE_MS
        if self.kind == "day":
            return self.count * DAY_MS
        if self.kind == "week":
            return WEEK_MS
        return None

    @property
    def approx_ms(self) -> int:
        """A length usable for ordering and estimates (a month counts as 30 days, a year 365)."""
        return self.fixed_ms or (365 if self.kind == "year" else 30) * DAY_MS

    @property
    def native(self) -> bool:
        """Whether Upbit serves this timeframe directly."""
        return self.endpoint is not None

    @property
    def endpoint(self) -> str | None:
        """The Upbit REST path serving this timeframe, relative to /v1, if any."""
        if self.kind == "second":
            return "candles/seconds" if self.count == 1 else None
        if self.kind == "minute":
            return f"candles/minutes/{self.count}" if self.count in _NATIVE_MINUTES else None
        if self.kind == "day":
            return "candles/days" if self.count == 1 else None
        return f"candles/{self.kind}s"  # weeks, months, years

    def floor(self, ms: Millis) -> Millis:
        """The start of the period holding each time (epoch ms, vectorised)."""
        import numpy as np

        ms = np.asarray(ms, dtype=np.int64)
        if self.kind in _CALENDAR:
            unit = _CALENDAR[self.kind][0]
            periods = ms.astype("datetime64[ms]").astype(f"datetime64[{unit}]")
            return periods.astype("datetime64[ms]").astype(np.int64)
        size = self.fixed_ms
        assert size is not None
        offset = _WEEK_OFFSET_MS if self.kind == "week" else 0
        return (ms - offset) // size * size + offset

    def shift(self, ms: Millis, periods: int) -> Millis:
        """Move aligned period starts by a whole number of periods."""
        import numpy as np

        ms = np.asarray(ms, dtype=np.int64)
        if self.kind in _CALENDAR:
            unit = _CALENDAR[self.kind][0]
            moved = ms.astype("datetime64[ms]").astype(f"datetime64[{unit}]") + periods
            return moved.astype("datetime64[ms]").astype(np.int64)
        size = self.fixed_ms
        assert size is not None
        return ms + periods * size

    def periods_between(self, starts: Millis, ends: Millis) -> Millis:
        """`count_periods`, vectorised over aligned [start, end) pairs."""
        import numpy as np

        size = self.fixed_ms
        if size is not None:
            return np.asarray((ends - starts) // size, dtype=np.int64)
        unit = _CALENDAR[self.kind][0]
        last = np.asarray(ends).astype("datetime64[ms]").astype(f"datetime64[{unit}]")
        first = np.asarray(starts).astype("datetime64[ms]").astype(f"datetime64[{unit}]")
        return np.asarray(last - first, dtype=np.int64)

    def floor_one(self, ms: int) -> int:
        """`floor` for a single time."""
        if self.kind in _CALENDAR:
            year, month = _year_month(ms)
            return _month_start(year, month if self.kind == "month" else 1)
        size = self.fixed_ms
        assert size is not None
        offset = _WEEK_OFFSET_MS if self.kind == "week" else 0
        return (ms - offset) // size * size + offset

    def shift_one(self, ms: int, periods: int) -> int:
        """`shift` for a single time."""
        if self.kind in _CALENDAR:
            year, month = _year_month(ms)
            return _month_start(year, month + periods * _CALENDAR[self.kind][1])
        size = self.fixed_ms
        assert size is not None
        return ms + periods * size

    def ceil_one(self, ms: int) -> int:
        """The first period start at or after `ms`."""
        start = self.floor_one(ms)
        return start if start == ms else self.shift_one(start, 1)

    def count_periods(self, start: int, end: int) -> int:
        """How many periods start in [start, end), both ends aligned."""
        if end <= start:
            return 0
        if self.kind in _CALENDAR:
            (y0, m0), (y1, m1) = _year_month(start), _year_month(end)
            return ((y1 - y0) * 12 + (m1 - m0)) // _CALENDAR[self.kind][1]
        size = self.fixed_ms
        assert size is not None
        return (end - start) // size

    def divides(self, coarser: Timeframe) -> bool:
        """Whether every `coarser` period is an exact union of whole periods of this one."""
        if self == coarser:
            return True
        if self.kind == "month":
            return coarser.kind == "year"
        size = self.fixed_ms
        if size is None or self.kind == "week":
            return False  # nothing coarser is made of whole weeks or years
        # Seconds, minutes and days are aligned to the epoch; weeks, months and years start
        # at midnight, so they are made of whole periods of anything that divides a day.
        fixed = coarser.fixed_ms
        if coarser.kind in ("second", "minute", "day") and fixed is not None:
            return fixed % size == 0
        return DAY_MS % size == 0

    def divisors(self) -> list[Timeframe]:
        """The finer supported timeframes that divide this one, finest first."""
        return [tf for tf in SUPPORTED if tf != self and tf.divides(self)]


def _make(name: str) -> Timeframe:
    number, suffix = int(name[:-1]), name[-1]
    if suffix == "s":
        return Timeframe(name, "second", number)
    if suffix == "y":
        return Timeframe(name, "year", 1)
    if suffix == "m":
        return Timeframe(name, "minute", number)
    if suffix == "h":
        return Timeframe(name, "minute", number * 60)
    if suffix == "d":
        return Timeframe(name, "day", number)
    if suffix == "w":
        return Timeframe(name, "week", 1)
    return Timeframe(name, "month", 1)


SUPPORTED: tuple[Timeframe, ...] = tuple(
    _make(n) for n in "1s 1m 3m 5m 10m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M 1y".split()
)
_BY_NAME = {tf.name: tf for tf in SUPPORTED}


# How people write units (`60m`, `1H`, `5min`, `1hour`, `1mo`): to the kinds and counts of
# SUPPORTED. `M` stays a month (`1M`); a bare upper-case `H`, `D`, ... is the lower-case unit.
_UNITS: dict[str, tuple[Kind, int]] = {
    **dict.fromkeys(("s", "S", "sec", "second", "seconds"), ("second", 1)),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), ("minute", 1)),
    **dict.fromkeys(("h", "H", "hr", "hour", "hours"), ("minute", 60)),
    **dict.fromkeys(("d", "D", "day", "days"), ("day", 1)),
    **dict.fromkeys(("w", "W", "week", "weeks"), ("week", 1)),
    **dict.fromkeys(("M", "mo", "mon", "month", "months"), ("month", 1)),
    **dict.fromkeys(("y", "Y", "year", "years"), ("year", 1)),
}


def _meant(text: str) -> str | None:
    """The supported timeframe a name means the same period as (`60m` is 1h, `1H` 1h,
    `24h` 1d, `7d` 1w, `60s` 1m), if one does: for a hint, never taken silently."""
    number = text[: len(text) - len(text.lstrip("0123456789"))]
    unit = text[len(number) :].strip()
    found = (_UNITS.get(unit) or _UNITS.get(unit.lower())) if number else None
    if found is None:
        return None
    kind, size = found
    count = int(number) * size
    # In the largest unit that holds it whole: 60s is 1m, 1440m 1d, 7d 1w, 12 months 1y.
    if kind == "second" and count % 60 == 0:
        kind, count = "minute", count // 60
    if kind == "minute" and count % 1440 == 0:
        kind, count = "day", count // 1440
    if (kind, count) == ("day", 7):
        kind, count = "week", 1
    if (kind, count) == ("month", 12):
        kind, count = "year", 1
    if kind in ("week", "month", "year"):  # one period each: their count is 1
        return next(tf.name for tf in SUPPORTED if tf.kind == kind) if count == 1 else None
    return next((tf.name for tf in SUPPORTED if (tf.kind, tf.count) == (kind, count)), None)


def _year_month(ms: int) -> tuple[int, int]:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.year, when.month


def _month_start(year: int, month: int) -> int:
    """Epoch ms of the first of `month` (which may run past 12 or below 1) in `year`."""
    year, index = divmod(year * 12 + month - 1, 12)
    return int(datetime(year, index + 1, 1, tzinfo=UTC).timestamp() * 1000)
