"""Every candle page is checked before it is believed.

An answer can be well-formed JSON of the right shape and still be wrong: candles after the
page's `to`, more candles than asked, a time twice, prices that cannot be (a close below the
low, a price of zero or less, negative volume), or a candle whose last trade lies outside its
own period (times shifted). Such a page is refused (`BadAnswer`): the pager asks again, and
after a few tries the job fails with the reason; nothing of the page is stored.

An empty page is what Upbit sends for a stretch without trades, and also what a broken proxy
or cache might send. Alone it proves nothing, so before a stretch is recorded as quiet (or as
before the listing) a coarser candle over the same span is asked for as a witness: a witness
candle inside the span, or one whose last trade falls inside it, means the page lied.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from upbit_cache.candles import impossible_values, times_ms
from upbit_cache.errors import ResponseFormatError
from upbit_cache.ranges import TimeRange
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso

# Upbit stores a candle's last trade a little after the period ends (seen: 1.9 s on a 3m
# candle); more than this is not a late store but a candle in the wrong place.
LATE_TRADE_MS = 300_000


class BadAnswer(ResponseFormatError):
    """An answer that parses but cannot be true; worth asking again."""


def check_page(table: pa.Table, tf: Timeframe, page: TimeRange, count: int) -> None:
    """Refuse a page of `count` periods before `page.end` that cannot be Upbit's truth.

    Candles before `page.start` are allowed: Upbit fills a page with older candles when the
    window had periods without trades.
    """
    if table.num_rows == 0:
        return
    if table.num_rows > count:
        raise BadAnswer(f"{table.num_rows} candles for a page of {count}")
    times = times_ms(table).to_numpy()
    if times.max() >= page.end:
        raise BadAnswer(f"a candle at {iso(int(times.max()))}, not before {iso(page.end)}")
    if len(np.unique(times)) != len(times):
        raise BadAnswer("the same candle time twice")
    why = impossible_values(table)
    if why is not None:
        raise BadAnswer(f"a candle with {why}")
    last = table["timestamp"].cast(pa.int64()).to_numpy()
    ends = tf.shift(times, 1)
    outside = (last < times) | (last > ends + LATE_TRADE_MS)
    if outside.any():
        at = int(times[np.argmax(outside)])
        raise BadAnswer(f"the candle at {iso(at)} has its last trade outside its period")
