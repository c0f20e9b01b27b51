"""Deterministic synthetic market data: markets, trades, and candles of every timeframe.

Everything derives from trades. Whether minute `i` of market `m` has trades, how many, and each
trade's time, price, volume and side come from a counter-based hash (splitmix64) of
(market seed, minute, trade index), so any range can be generated on its own, vectorised, with
no cumulative state. 1m candles aggregate trades; every other timeframe aggregates 1m candles.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from .clock import TimeLike, to_epoch_ms

__all__ = [
    "MINUTE_UNITS",
    "NAMED_UNITS",
    "CandleBars",
    "History",
    "MarketInfo",
    "Unit",
    "check_unit",
    "period_floor",
    "period_shift",
]

SECOND_MS = 1_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MINUTES_PER_DAY = 1_440
# 1970-01-05 was the first Monday after the epoch; weeks are aligned on it.
_MONDAY0_MS = 4 * DAY_MS
# Day summaries are computed and cached in blocks of this many UTC days.
_BLOCK_DAYS = 4

MINUTE_UNITS: tuple[int, ...] = (1, 3, 5, 10, 15, 30, 60, 240)
NAMED_UNITS: tuple[str, ...] = ("seconds", "days", "weeks", "months", "years")
Unit = int | str

CAUTION_KEYS: tuple[str, ...] = (
    "PRICE_FLUCTUATIONS",
    "TRADING_VOLUME_SOARING",
    "DEPOSIT_AMOUNT_SOARING",
    "GLOBAL_PRICE_DIFFERENCES",
    "CONCENTRATION_OF_SMALL_ACCOUNTS",
)

RECENT_LISTINGS: tuple[str, ...] = (
    "2026-11-05T03:00:00Z",
    "2026-11-12T00:00:00Z",
    "2026-11-18T12:00:00Z",
)

_REF_MINUTE = to_epoch_ms("2026-11-01T00:00:00Z") // MINUTE_MS
_MINUTES_PER_YEAR = 525_960.0
_KNOT_MINUTES = 5
# Long quiet stretches: one per cell of this many minutes (120 days).
_QUIET_CELL = 120 * MINUTES_PER_DAY
_QUIET_SALT = 0x91E7
_OLD_LISTING_FROM = to_epoch_ms("2017-10-01T00:00:00Z")
_OLD_LISTING_TO = to_epoch_ms("2021-12-31T00:00:00Z")
_TOP_LISTING_TO = to_epoch_ms("2017-12-31T00:00:00Z")

# --------------------------------------------------------------------------------------------
# Hashing


_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
# numpy scalars, not Python ints: mixing the two takes a much slower conversion path.
_U_GOLDEN = np.uint64(_GOLDEN)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
_LAG_SALT = np.uint64(0x51A6_0000_57E0_0001)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array (in place; wrap-around is intended)."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def _hash_counter(seed: int, counter: np.ndarray) -> np.ndarray:
    """One 64-bit hash per counter value (int64 array) for the given seed."""
    return _mix(counter.astype(np.uint64) * _U_GOLDEN + np.uint64(seed))


def _py_hash(seed: int, *keys: int | str) -> int:
    """Scalar splitmix64 chain used to derive per-market parameters."""
    x = seed & _MASK64
    for key in keys:
        k = zlib.crc32(key.encode()) if isinstance(key, str) else key
        x = (x + _GOLDEN + k) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 31
    return x


def _py_uniform(seed: int, *keys: int | str) -> float:
    return (_py_hash(seed, *keys) >> 11) * 2.0**-53


def _halves(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low and high 32-bit halves of uint64 hashes (uint32 converts to float far faster)."""
    words = h.view(np.uint32)
    return words[..., 0::2], words[..., 1::2]


def _round8(x: np.ndarray) -> np.ndarray:
    # Trade volumes are whole 1e-8 steps; rounding every sum to 8 decimals recovers the exact
    # decimal total whatever the summation order (while magnitudes allow).
    return np.round(x, 8)


# --------------------------------------------------------------------------------------------
# Timeframes


def check_unit(unit: Unit) -> Unit:
    """Validate a timeframe: minutes as an int in MINUTE_UNITS, or a name in NAMED_UNITS."""
    if isinstance(unit, bool) or unit not in (*MINUTE_UNITS, *NAMED_UNITS):
        raise ValueError(f"unknown timeframe {unit!r}")
    return unit


def _floor_array(unit: Unit, t: np.ndarray) -> np.ndarray:
    """Start (epoch ms) of the period containing each time in `t`."""
    if unit == "seconds":
        return t // SECOND_MS * SECOND_MS
    if isinstance(unit, int):
        size = unit * MINUTE_MS
        return t // size * size
    if unit == "days":
        return t // DAY_MS * DAY_MS
    if unit == "weeks":
        return (t - _MONDAY0_MS) // WEEK_MS * WEEK_MS + _MONDAY0_MS
    step = "M" if unit == "months" else "Y"
    return (
        t.astype("datetime64[ms]")
        .astype(f"datetime64[{step}]")
        .astype("datetime64[ms]")
        .view(np.int64)
    )


def period_floor(unit: Unit, t_ms: int) -> int:
    """Start (epoch ms) of the period of `unit` containing `t_ms`."""
    return int(_floor_array(check_unit(unit), np.array([t_ms], dtype=np.int64))[0])


def period_shift(unit: Unit, start_ms: int, k: int) -> int:
    """Start of the period `k` periods after the one starting at `start_ms` (k may be < 0)."""
    check_unit(unit)
    if unit in ("months", "years"):
        step = "M" if unit == "months" else "Y"
        moved = np.datetime64(start_ms, "ms").astype(f"datetime64[{step}]") + k
        return int(moved.astype("datetime64[ms]").astype(np.int64))
    if isinstance(unit, int):
        return start_ms + k * unit * MINUTE_MS
    return start_ms + k * {"seconds": SECOND_MS, "days": DAY_MS, "weeks": WEEK_MS}[unit]


def _period_ceil(unit: Unit, t_ms: int) -> int:
    start = period_floor(unit, t_ms)
    return start if start == t_ms else period_shift(unit, start, 1)


# --------------------------------------------------------------------------------------------
# Candle arrays


_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class CandleBars:
    """Column arrays of candles, oldest first. `start` and `timestamp` are epoch ms."""

    start: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    open: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    high: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    low: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    close: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    volume: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    value: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    timestamp: np.ndarray = field(default_factory=lambda: _EMPTY_I)

    COLUMNS = ("start", "open", "high", "low", "close", "volume", "value", "timestamp")

    def __len__(self) -> int:
        return len(self.start)

    def select(self, index: slice | np.ndarray) -> CandleBars:
        """Rows picked by a slice, boolean mask or index array."""
        return CandleBars(*(getattr(self, c)[index] for c in self.COLUMNS))

    def between(self, start_ms: int, end_ms: int) -> CandleBars:
        """Rows whose start lies in [start_ms, end_ms)."""
        lo, hi = np.searchsorted(self.start, [start_ms, end_ms])
        return self.select(slice(int(lo), int(hi)))

    @staticmethod
    def concat(parts: list[CandleBars]) -> CandleBars:
        """Join bars given oldest part first."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return CandleBars()
        if len(parts) == 1:
            return parts[0]
        return CandleBars(
            *(np.concatenate([getattr(p, c) for p in parts]) for c in CandleBars.COLUMNS)
        )

    def aggregate(self, keys: np.ndarray) -> CandleBars:
        """Merge consecutive rows sharing a key (the new period start) into one candle each."""
        if not len(self):
            return self
        change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        first = np.concatenate(([0], change))
        last = np.concatenate((change - 1, [len(keys) - 1]))
        return CandleBars(
            start=keys[first],
            open=self.open[first],
            high=np.maximum.reduceat(self.high, first),
            low=np.minimum.reduceat(self.low, first),
            close=self.close[last],
            volume=_round8(np.add.reduceat(self.volume, first)),
            value=np.add.reduceat(self.value, first),
            timestamp=self.timestamp[last],
        )

    def to_frame(self) -> pd.DataFrame:
        """The bars as a DataFrame with the COLUMNS above."""
        return pd.DataFrame({c: getattr(self, c) for c in self.COLUMNS})


@dataclass(frozen=True)
class _Trades:
    """Flat, time-ordered trades; `stored` is when REST counts each (its time plus its lag)."""

    time: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    ask: np.ndarray
    sequential_id: np.ndarray
    stored: np.ndarray

    def select(self, mask: np.ndarray) -> _Trades:
        return _Trades(
            self.time[mask],
            self.price[mask],
            self.volume[mask],
            self.ask[mask],
            self.sequential_id[mask],
            self.stored[mask],
        )

    def bars(self, unit_ms: int) -> CandleBars:
        """Candles of `unit_ms` (a minute or a second) aggregating these trades; a candle's
        timestamp is the stored time of its last trade."""
        if not len(self.time):
            return CandleBars()
        one = CandleBars(
            start=self.time,
            open=self.price,
            high=self.price,
            low=self.price,
            close=self.price,
            volume=self.volume,
            value=self.price * self.volume,
            timestamp=self.stored,
        )
        return one.aggregate(self.time // unit_ms * unit_ms)


@dataclass(frozen=True)
class _Grid:
    """Trades of the active minutes of a range as (slot, minute) arrays.

    Slot j holds trade j of its minute; slots past a minute's last trade repeat that trade
    with zero volume, so every candle field is a plain reduction over axis 0. Trade times are
    only materialised when asked for (candles need the last one only). `lag_ms` > 0 gives each
    trade a store lag in [0, lag_ms] (0 = REST counts trades at once).
    """

    minute_ms: np.ndarray
    counts: np.ndarray
    slot: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    hashes: np.ndarray
    lag_ms: int = 0

    def _times(self, rows: slice) -> np.ndarray:
        # Trade j of n sits at a random point inside the j-th n-th of its minute, so times are
        # strictly increasing without sorting.
        low, _ = _halves(self.hashes[rows])
        fraction = (low & np.uint32(0xFFFF)) * 2.0**-16
        offset = (self.slot[rows] + fraction) * (MINUTE_MS / self.counts)
        return np.asarray(self.minute_ms + offset.astype(np.int64), dtype=np.int64)

    def _lags(self, rows: slice) -> np.ndarray | int:
        """Each trade's store lag in ms: about a fifth are 0, the rest spread up to lag_ms."""
        if not self.lag_ms:
            return 0
        # A fresh full mix: every bit of the trade hash already drives its time, price or size.
        u = (_mix(self.hashes[rows] ^ _LAG_SALT) >> np.uint64(11)) * 2.0**-53
        spread = np.maximum(0.0, 1.25 * u - 0.25)
        lags: np.ndarray = np.rint(self.lag_ms * spread**3).astype(np.int64)
        return lags

    def bars(self) -> CandleBars:
        """The 1m candles."""
        return CandleBars(
            start=self.minute_ms,
            open=self.price[0],
            high=self.price.max(axis=0),
            low=self.price.min(axis=0),
            close=self.price[-1],
            volume=_round8(self.volume.sum(axis=0)),
            value=(self.price * self.volume).sum(axis=0),
            timestamp=(self._times(slice(-1, None)) + self._lags(slice(-1, None)))[0],
        )

    def trades(self) -> _Trades:
        """The trades, flattened in time order."""
        valid = (np.arange(len(self.price))[:, None] < self.counts).T
        time = self._times(slice(None)).T[valid]
        lags = self._lags(slice(None))
        _, high = _halves(self.hashes)
        return _Trades(
            time,
            self.price.T[valid],
            self.volume.T[valid],
            (high.T[valid] & np.uint32(1)).astype(bool),
            time * 1000 + self.slot.T[valid],
            time + lags.T[valid] if isinstance(lags, np.ndarray) else time,
        )


# --------------------------------------------------------------------------------------------
# Markets


@dataclass(frozen=True)
class MarketInfo:
    """One market as market/all describes it, plus the simulator's model facts."""

    market: str
    korean_name: str
    english_name: str
    warning: bool
    caution: Mapping[str, bool]
    listed_ms: int
    sparse: bool
    base_price: float

    @property
    def quote(self) -> str:
        """Quote currency: KRW, BTC or USDT."""
        return self.market.split("-", 1)[0]

    @property
    def listed_at(self) -> datetime:
        """Listing time (no trade exists before it)."""
        return datetime.fromtimestamp(self.listed_ms / 1000, tz=UTC)


@dataclass(frozen=True)
class _Model:
    """Hash seed and price/activity parameters of one market."""

    index: int
    seed: int
    listed_ms: int
    sparse: bool
    log_base: float
    trend: float
    amps: tuple[float, ...]
    periods: tuple[float, ...]
    phases: tuple[float, ...]
    minute_sigma: float
    trade_sigma: float
    idle: float
    max_trades: int
    notional: float
    # Tick table, ascending: log of each row's lower price bound, multiplier, divisor.
    tick_log_bounds: np.ndarray
    tick_mul: np.ndarray
    tick_div: np.ndarray


# (code, korean name, english name, KRW price around 2026-11)
_KNOWN: tuple[tuple[str, str, str, float], ...] = (
    ("BTC", "비트코인", "Bitcoin", 1.4e8),
    ("ETH", "이더리움", "Ethereum", 5.2e6),
    ("XRP", "엑스알피(리플)", "XRP", 3200.0),
    ("SOL", "솔라나", "Solana", 2.6e5),
    ("DOGE", "도지코인", "Dogecoin", 320.0),
    ("ADA", "에이다", "Cardano", 950.0),
    ("TRX", "트론", "TRON", 420.0),
    ("AVAX", "아발란체", "Avalanche", 3.6e4),
    ("LINK", "체인링크", "Chainlink", 2.6e4),
    ("DOT", "폴카닷", "Polkadot", 7400.0),
    ("BCH", "비트코인캐시", "Bitcoin Cash", 7.1e5),
    ("ETC", "이더리움클래식", "Ethereum Classic", 2.5e4),
    ("USDT", "테더", "Tether", 1400.0),
    ("SHIB", "시바이누", "Shiba Inu", 0.021),
    ("NEAR", "니어프로토콜", "NEAR Protocol", 4200.0),
    ("SUI", "수이", "Sui", 4800.0),
    ("XLM", "스텔라루멘", "Stellar Lumens", 520.0),
    ("HBAR", "헤데라", "Hedera", 300.0),
    ("ATOM", "코스모스", "Cosmos", 6300.0),
    ("APT", "앱토스", "Aptos", 8500.0),
    ("ARB", "아비트럼", "Arbitrum", 1100.0),
    ("SEI", "세이", "Sei", 480.0),
    ("AAVE", "에이브", "Aave", 3.9e5),
    ("SAND", "샌드박스", "The Sandbox", 430.0),
    ("MANA", "디센트럴랜드", "Decentraland", 480.0),
    ("EOS", "이오스", "EOS", 1100.0),
    ("NEO", "네오", "NEO", 1.6e4),
    ("QTUM", "퀀텀", "Qtum", 3600.0),
    ("ALGO", "알고랜드", "Algorand", 320.0),
    ("PEPE", "페페", "Pepe", 0.018),
    ("ONDO", "온도파이낸스", "Ondo Finance", 1300.0),
    ("STX", "스택스", "Stacks", 2300.0),
)
_KRW_COUNT = 215
_BTC_COUNT = 30
_USDT_ASSETS = ("BTC", "ETH", "XRP", "SOL", "DOGE", "ADA", "TRX", "LINK", "AVAX", "DOT")
_TOP_LIQUID = 20
_BTC_KRW = 1.4e8
_USDT_KRW = 1400.0

_CONSONANTS = "BCDFGKLMNPRSTVXZ"
_VOWELS = "AEIOUY"
_SYLLABLES = (
    "비트코인이더리움솔라나도지에다체링크폴카닷스텔루멘아발란파토마티노시오퀀웨브플로우엑알피"
)
_EN_SUFFIXES = ("", " Network", " Protocol", " Chain", "coin", " Finance", " Token", "verse", " AI")
_KO_SUFFIXES = ("", "네트워크", "프로토콜", "체인", "코인", "파이낸스", "토큰", "버스", "에이아이")

# Tick tables: (lower price bound, multiplier, divisor); price = rint(p * div / mul) * mul / div,
# so decimal ticks come out as the double nearest the decimal.
_KRW_TICKS: tuple[tuple[float, float, float], ...] = (
    (2e6, 1000.0, 1.0),
    (1e6, 500.0, 1.0),
    (5e5, 100.0, 1.0),
    (1e5, 50.0, 1.0),
    (1e4, 10.0, 1.0),
    (1e3, 1.0, 1.0),
    (1e2, 1.0, 10.0),
    (1e1, 1.0, 100.0),
    (1.0, 1.0, 1e3),
    (0.1, 1.0, 1e4),
    (0.01, 1.0, 1e5),
    (0.0, 1.0, 1e6),
)
_BTC_TICKS: tuple[tuple[float, float, float], ...] = ((0.0, 1.0, 1e8),)
_USDT_TICKS: tuple[tuple[float, float, float], ...] = (
    (10.0, 1.0, 1e3),
    (1.0, 1.0, 1e4),
    (0.1, 1.0, 1e5),
    (0.0, 1.0, 1e8),
)


def _generated_assets(count: int, taken: set[str]) -> list[tuple[str, str, str, float]]:
    """Deterministic plausible tickers/names for the long tail of the KRW market."""
    out: list[tuple[str, str, str, float]] = []
    k = 0
    while len(out) < count:
        k += 1
        h = _py_hash(0x5EED, "asset", k)
        length = 3 + (h & 3) % 3
        letters = []
        for pos in range(length):
            pool = _VOWELS if pos % 2 else _CONSONANTS
            letters.append(pool[(h >> (8 + 5 * pos)) % len(pool)])
        code = "".join(letters)
        if code in taken:
            continue
        taken.add(code)
        variant = (h >> 40) % len(_EN_SUFFIXES)
        english = code.capitalize() + _EN_SUFFIXES[variant]
        syllables = 2 + (h >> 44) % 3
        korean = "".join(
            _SYLLABLES[(h >> (48 + 3 * s)) % len(_SYLLABLES)] for s in range(syllables)
        )
        korean += _KO_SUFFIXES[variant]
        # Small coins between ~1 and ~5000 KRW (log-uniform), a few pricier ones.
        u = _py_uniform(h, "price")
        price = math.exp(u * math.log(5000.0)) if u < 0.93 else 10 ** (4 + 2 * _py_uniform(h, "p"))
        out.append((code, korean, english, float(f"{price:.3g}")))
    return out


def _market_table() -> list[tuple[str, str, str, float, bool]]:
    """(market, korean, english, base price in quote, sparse) for every market, in list order."""
    known = list(_KNOWN)
    assets = known + _generated_assets(_KRW_COUNT - len(known), {c for c, *_ in known})
    rows: list[tuple[str, str, str, float, bool]] = []
    for i, (code, ko, en, krw) in enumerate(assets):
        rows.append((f"KRW-{code}", ko, en, krw, i >= len(_KNOWN) and i % 10 == 5))
    # BTC- quotes need at least ~100 ticks of 1e-8 BTC, so only assets above ~300 KRW.
    btc_assets = [a for a in assets if a[0] not in ("BTC", "USDT") and a[3] >= 300.0]
    for i, (code, ko, en, krw) in enumerate(btc_assets[:_BTC_COUNT]):
        rows.append((f"BTC-{code}", ko, en, krw / _BTC_KRW, i >= 10 and i % 4 == 1))
    by_code = {a[0]: a for a in assets}
    for i, code in enumerate(_USDT_ASSETS):
        _, ko, en, krw = by_code[code]
        rows.append((f"USDT-{code}", ko, en, krw / _USDT_KRW, i >= 5 and i % 3 == 2))
    return rows


def _build_models(
    listings: Mapping[str, TimeLike],
) -> tuple[tuple[MarketInfo, ...], dict[str, _Model]]:
    """Public facts and model parameters of every market, all derived from its code."""
    table = _market_table()
    krw = [row[0] for row in table if row[0].startswith("KRW-")]
    recent = dict(zip(krw[-len(RECENT_LISTINGS) :], map(to_epoch_ms, RECENT_LISTINGS), strict=True))
    unknown = set(listings) - {row[0] for row in table}
    if unknown:
        raise KeyError(f"listing override for unknown markets: {sorted(unknown)}")
    infos: list[MarketInfo] = []
    models: dict[str, _Model] = {}
    for index, (market, ko, en, base, sparse) in enumerate(table):
        seed = _py_hash(0xC0FFEE, market)
        quote = market.split("-", 1)[0]
        krw_index = krw.index(market) if quote == "KRW" else -1
        top = 0 <= krw_index < _TOP_LIQUID
        if market in listings:
            # Whole minutes only, so no minute is ever cut in two by a listing.
            listed = -(-to_epoch_ms(listings[market]) // MINUTE_MS) * MINUTE_MS
        elif market in recent:
            listed = recent[market]
        else:
            hi = _TOP_LISTING_TO if top else _OLD_LISTING_TO
            span = hi - _OLD_LISTING_FROM
            listed = _OLD_LISTING_FROM + int(_py_uniform(seed, "listed") * span)
            listed -= listed % 3_600_000
        caution = {
            key: krw_index >= 0 and krw_index % mod == rem
            for key, mod, rem in zip(
                CAUTION_KEYS, (29, 31, 61, 53, 67), (3, 7, 19, 11, 23), strict=True
            )
        }
        infos.append(
            MarketInfo(
                market=market,
                korean_name=ko,
                english_name=en,
                warning=krw_index >= 0 and krw_index % 41 == 17,
                caution=caution,
                listed_ms=listed,
                sparse=sparse,
                base_price=base,
            )
        )
        u = [_py_uniform(seed, "model", k) for k in range(12)]
        notional = {"KRW": 2e6 if top else 3e5, "BTC": 0.005, "USDT": 150.0}[quote]
        ticks = {"KRW": _KRW_TICKS, "BTC": _BTC_TICKS, "USDT": _USDT_TICKS}[quote][::-1]
        models[market] = _Model(
            index=index,
            seed=seed,
            listed_ms=listed,
            sparse=sparse,
            log_base=math.log(base),
            trend=0.45 if market == "KRW-BTC" else -0.2 + 0.7 * u[0],
            amps=(0.15 + 0.25 * u[1], 0.04 + 0.08 * u[2], 0.01 + 0.02 * u[3], 0.002 + 0.004 * u[4]),
            periods=(
                (300 + 400 * u[5]) * MINUTES_PER_DAY,
                (5 + 15 * u[6]) * MINUTES_PER_DAY,
                (10 + 30 * u[7]) * 60,
                40 + 160 * u[8],
            ),
            phases=tuple(2 * math.pi * _py_uniform(seed, "phase", k) for k in range(4)),
            minute_sigma=0.0005 + 0.0015 * u[9],
            trade_sigma=0.0003 + 0.0012 * u[10],
            idle=0.0 if market in ("KRW-BTC", "KRW-ETH") else (0.002 if top else 0.04 * u[11]),
            max_trades=3,
            notional=notional,
            tick_log_bounds=np.array([math.log(b) if b > 0 else -math.inf for b, _, _ in ticks]),
            tick_mul=np.array([m for _, m, _ in ticks]),
            tick_div=np.array([d for _, _, d in ticks]),
        )
    return tuple(infos), models


def _quiet_spans(
    quiet: Mapping[str, Sequence[tuple[TimeLike, TimeLike]]], models: Mapping[str, _Model]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Quiet spans per market index as sorted, disjoint (start, end) minute arrays."""
    unknown = set(quiet) - set(models)
    if unknown:
        raise KeyError(f"quiet spans for unknown markets: {sorted(unknown)}")
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for market, spans in quiet.items():
        minutes: list[tuple[int, int]] = []
        for start, end in spans:
            lo, hi = to_epoch_ms(start), to_epoch_ms(end)
            if hi <= lo:
                raise ValueError(f"empty quiet span for {market}: {start!r} to {end!r}")
            # Whole minutes, widened: no trade may fall inside [start, end).
            minutes.append((lo // MINUTE_MS, -(-hi // MINUTE_MS)))
        merged: list[list[int]] = []
        for lo, hi in sorted(minutes):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        if merged:
            bounds = np.array(merged, dtype=np.int64)
            out[models[market].index] = (bounds[:, 0], bounds[:, 1])
    return out


# --------------------------------------------------------------------------------------------
# History


class _LRU:
    """Small thread-safe bounded mapping (least recently used entries are dropped first)."""

    def __init__(self, maxsize: int) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def put(self, key: Hashable, value: Any) -> None:
        """Store `value` as the most recently used entry."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached value for `key`, computed with `make()` on a miss."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        # Computed outside the lock so other threads are not blocked; a duplicate computation
        # in a race is harmless because the result is deterministic.
        value = make()
        self.put(key, value)
        return value


class History:
    """The simulated exchange's markets and their deterministic trades and candles.

    `listings` overrides listing times (market -> time, rounded up to a whole minute).
    `store_lag_ms` > 0: REST stores each trade up to that long after it happens (see
    `candle_bars`). `quiet` gives markets spans [start, end) without any trade (widened to
    whole minutes); `long_quiet` gives the sparse BTC- and USDT- markets a dead stretch of 8 to
    25 days in every 120 days. The caches bound memory: `cache_days` market-days of minute
    candles (per unit and view) and `cache_blocks` market-blocks of day candles (_BLOCK_DAYS
    days each).
    """

    def __init__(
        self,
        listings: Mapping[str, TimeLike] | None = None,
        *,
        store_lag_ms: int = 0,
        quiet: Mapping[str, Sequence[tuple[TimeLike, TimeLike]]] | None = None,
        long_quiet: bool = False,
        cache_days: int = 1024,
        cache_blocks: int = 16_384,
    ) -> None:
        if store_lag_ms < 0:
            raise ValueError(f"store_lag_ms must be >= 0, got {store_lag_ms}")
        self.markets, self._models = _build_models(listings or {})
        self._info = {m.market: m for m in self.markets}
        self.store_lag_ms = int(store_lag_ms)
        self._quiet = _quiet_spans(quiet or {}, self._models)
        self._long_quiet = {
            self._models[m.market].index
            for m in self.markets
            if long_quiet and m.sparse and m.quote in ("BTC", "USDT")
        }
        self._days = _LRU(cache_days)
        self._blocks = _LRU(cache_blocks)

    def _lag(self, stored: bool) -> int:
        """The store lag of a view: REST's (`stored`) or at once (WebSocket, ticker)."""
        return self.store_lag_ms if stored else 0

    def market_info(self, market: str) -> MarketInfo:
        """Facts about one market (KeyError if unknown; codes are case-sensitive)."""
        return self._info[market]

    def listed_markets(self, now_ms: int) -> list[MarketInfo]:
        """Markets already listed at `now_ms`, in list order."""
        return [m for m in self.markets if m.listed_ms <= now_ms]

    # ---- trades -----------------------------------------------------------------------------

    def _grid(self, model: _Model, minute0: int, minute1: int, lag: int = 0) -> _Grid:
        """All trades of minutes [minute0, minute1) (minutes since the epoch), store lag `lag`."""
        minute0 = max(minute0, model.listed_ms // MINUTE_MS)
        minute1 = max(minute1, minute0)
        hm = _hash_counter(model.seed, np.arange(minute0, minute1, dtype=np.int64))
        lo, hi = _halves(hm)
        counts = self._trade_counts(model, minute0, minute1, lo)
        dead = self._dead_minutes(model, minute0, minute1)
        if dead is not None:
            counts = np.where(dead, 0, counts)
        lp, mul, div = self._price_path(model, minute0, minute1)
        active = counts > 0
        minute_ms = np.arange(minute0, minute1, dtype=np.int64)[active] * MINUTE_MS
        counts, hm, lp = counts[active], hm[active], lp[active]
        if isinstance(mul, np.ndarray) and isinstance(div, np.ndarray):
            mul, div = mul[active], div[active]
        noise = 2.0 * (hi[active] * 2.0**-32) - 1.0
        level = np.exp(lp + model.minute_sigma * noise)

        slots = np.arange(model.max_trades, dtype=np.int32)[:, None]
        slot = np.minimum(slots, counts - 1)
        # One multiply-xorshift round is enough on top of the well-mixed per-minute hash.
        h = (hm ^ (slot + 1).astype(np.uint64)) * _M1
        h ^= h >> np.uint64(32)
        h_lo, h_hi = _halves(h)
        # Price in ticks: the minute's level times a uniform factor in [1 - sigma, 1 + sigma].
        level_ticks = level * div / mul
        low = level_ticks * (1.0 - model.trade_sigma)
        span = level_ticks * (2.0 * model.trade_sigma * 2.0**-32)
        ticks = np.rint(low + h_hi * span)
        # price = ticks * tick size, written so that decimal ticks give the nearest double.
        if np.ndim(mul):
            price = ticks * mul / div
        elif div == 1.0:
            price = ticks * mul
        else:
            price = ticks / div
        # Right-skewed volume (mean 1 unit of `notional`) in whole 1e-8 steps, 0 in repeat slots.
        unit = model.notional * 1e8 / level
        u = h_lo.astype(np.float64)
        lots = np.floor(unit * 0.05 + (unit * (2.85 * 2.0**-64)) * (u * u))
        return _Grid(
            minute_ms=minute_ms,
            counts=counts,
            slot=slot,
            price=price,
            volume=lots * (slots < counts) / 1e8,
            hashes=h,
            lag_ms=lag,
        )

    def _dead_minutes(self, model: _Model, minute0: int, minute1: int) -> np.ndarray | None:
        """Which minutes of [minute0, minute1) a quiet span silences; None if none can."""
        spans = self._quiet.get(model.index)
        long_quiet = model.index in self._long_quiet
        if spans is None and not long_quiet:
            return None
        minutes = np.arange(minute0, minute1, dtype=np.int64)
        dead = np.zeros(len(minutes), dtype=bool)
        if spans is not None:
            starts, ends = spans
            at = np.searchsorted(starts, minutes, side="right") - 1
            dead |= (at >= 0) & (minutes < ends[np.maximum(at, 0)])
        if long_quiet and len(minutes):
            # One stretch per 120-day cell, placed by the cell's hash: never across cells.
            cells = np.arange(minute0 // _QUIET_CELL, (minute1 - 1) // _QUIET_CELL + 1)
            lo, hi = _halves(_hash_counter(model.seed ^ _QUIET_SALT, cells))
            length = ((8 + 17 * (lo * 2.0**-32)) * MINUTES_PER_DAY).astype(np.int64)
            begin = (hi * 2.0**-32 * (_QUIET_CELL - length)).astype(np.int64)
            cell = minutes // _QUIET_CELL - cells[0]
            offset = minutes % _QUIET_CELL
            dead |= (offset >= begin[cell]) & (offset < begin[cell] + length[cell])
        return dead

    @staticmethod
    def _trade_counts(model: _Model, minute0: int, minute1: int, bits: np.ndarray) -> np.ndarray:
        """Number of trades in each minute of [minute0, minute1) (0 = no candle), as int32."""
        u = (bits >> np.uint32(8)) * 2.0**-24
        pick = (bits & np.uint32(0xFF)).astype(np.int32)
        if not model.sparse:
            return (u >= model.idle) * (1 + pick % model.max_trades)
        # Sparse: dead days, dead 6-hour blocks and dead hours make multi-hour gaps; the live
        # hours trade in about one minute out of eight.
        alive = u < 0.12
        for span, p_dead, salt in ((1440, 0.1, 1), (360, 0.35, 2), (60, 0.3, 3)):
            c0 = minute0 // span
            cells = np.arange(c0, (minute1 - 1) // span + 1, dtype=np.int64)
            lo, _ = _halves(_hash_counter(model.seed ^ salt, cells))
            dead = lo * 2.0**-32 < p_dead
            alive &= ~np.repeat(dead, span)[minute0 - c0 * span : minute1 - c0 * span]
        return alive * (1 + (pick & 1))

    @staticmethod
    def _price_path(
        model: _Model, minute0: int, minute1: int
    ) -> tuple[np.ndarray, np.ndarray | float, np.ndarray | float]:
        """Smooth log price of each minute of a range, and the tick as (multiplier, divisor).

        The tick comes as two floats when it is the same for the whole range (the usual case),
        else as per-minute arrays.
        """
        if minute1 <= minute0:
            return np.zeros(0), 1.0, 1.0
        # Evaluated on absolute 5-minute knots and interpolated linearly: 5x fewer sines, and a
        # minute's value does not depend on the range it is generated with.
        k0 = minute0 // _KNOT_MINUTES
        k1 = (minute1 - 1) // _KNOT_MINUTES + 2
        t = np.arange(k0, k1, dtype=np.float64) * _KNOT_MINUTES
        smooth = model.log_base + model.trend * (t - _REF_MINUTE) / _MINUTES_PER_YEAR
        for amp, period, phase in zip(model.amps, model.periods, model.phases, strict=True):
            smooth += amp * np.sin(t * (2 * math.pi / period) + phase)
        cut = slice(minute0 - k0 * _KNOT_MINUTES, minute1 - k0 * _KNOT_MINUTES)
        step = np.arange(_KNOT_MINUTES) / _KNOT_MINUTES
        lp = (smooth[:-1, None] + np.diff(smooth)[:, None] * step).reshape(-1)[cut]
        # The tick follows the price level, decided per knot.
        row = np.searchsorted(model.tick_log_bounds, smooth[:-1], side="right") - 1
        if (row == row[0]).all():
            return lp, float(model.tick_mul[row[0]]), float(model.tick_div[row[0]])
        row = np.repeat(row, _KNOT_MINUTES)[cut]
        return lp, model.tick_mul[row], model.tick_div[row]

    def trades(
        self, market: str, start_ms: int, end_ms: int, *, stored: bool = False
    ) -> pd.DataFrame:
        """Trades in [start_ms, end_ms) (by trade time): timestamp, price, volume, ask_bid,
        sequential_id; with `stored`, also `stored_at`, when REST counts each."""
        model = self._models[market]
        lag = self._lag(stored)
        tr = self._grid(model, start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS), lag).trades()
        tr = tr.select((tr.time >= start_ms) & (tr.time < end_ms))
        columns = {
            "timestamp": tr.time,
            "price": tr.price,
            "volume": tr.volume,
            "ask_bid": np.where(tr.ask, "ASK", "BID"),
            "sequential_id": tr.sequential_id,
        }
        if stored:
            columns["stored_at"] = tr.stored
        return pd.DataFrame(columns)

    # ---- candles ----------------------------------------------------------------------------

    def _day_of_minutes(self, model: _Model, day: int, unit: int = 1, lag: int = 0) -> CandleBars:
        """All `unit`-minute candles of one UTC day, every trade stored (cached)."""

        def make() -> CandleBars:
            if unit == 1:
                return self._grid(
                    model, day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY, lag
                ).bars()
            minutes = self._day_of_minutes(model, day, 1, lag)
            return minutes.aggregate(_floor_array(unit, minutes.start))

        bars: CandleBars = self._days.get_or_make((model.index, day, unit, lag), make)
        return bars

    def _prefetch_days(self, model: _Model, day0: int, day1: int, lag: int) -> None:
        """Put the missing 1m days of [day0, day1) in the cache, generated a few at a time."""
        # One call per few days instead of per day: numpy's per-call overhead dominates a day.
        missing = [d for d in range(day0, day1) if (model.index, d, 1, lag) not in self._days]
        while missing:
            run = [missing.pop(0)]
            while missing and missing[0] == run[-1] + 1 and len(run) < _BLOCK_DAYS:
                run.append(missing.pop(0))
            bars = self._grid(
                model, run[0] * MINUTES_PER_DAY, (run[-1] + 1) * MINUTES_PER_DAY, lag
            ).bars()
            for day in run:
                self._days.put(
                    (model.index, day, 1, lag), bars.between(day * DAY_MS, (day + 1) * DAY_MS)
                )

    @staticmethod
    def _settled_end(t1: int, now: int, lag: int) -> int:
        """End of the whole minutes before t1 whose every trade is stored at `now`."""
        # A minute that ended `lag` or more before now holds only stored trades.
        return min(t1, now - lag) // MINUTE_MS * MINUTE_MS

    def _minute_bars(
        self, model: _Model, unit: int, t0: int, t1: int, now: int, lag: int
    ) -> CandleBars:
        """`unit`-minute candles of [t0, t1) (t0 aligned, t1 <= now): the trades before t1
        stored before `now` count."""
        settled = self._settled_end(t1, now, lag)
        # Every minute unit divides a day, so complete days come straight from the cache.
        day_end = settled // DAY_MS * DAY_MS
        self._prefetch_days(model, t0 // DAY_MS, -(-t1 // DAY_MS), lag)
        parts = [
            self._day_of_minutes(model, day, unit, lag)
            for day in range(t0 // DAY_MS, day_end // DAY_MS)
        ]
        if parts:
            parts[0] = parts[0].between(t0, day_end)
        if t1 > day_end:
            # The rest: settled minutes of the day cut there, then the minutes of trades that
            # are too recent to be all stored (or cut by t1), trade by trade.
            minutes = []
            if settled > max(t0, day_end):
                day = self._day_of_minutes(model, day_end // DAY_MS, 1, lag)
                minutes.append(day.between(t0, settled))
            if t1 > settled:
                lo = max(t0, settled)
                trades = self._grid(model, lo // MINUTE_MS, -(-t1 // MINUTE_MS), lag).trades()
                fresh = trades.select((trades.time < t1) & (trades.stored < now))
                minutes.append(fresh.bars(MINUTE_MS))
            tail = CandleBars.concat(minutes)
            parts.append(tail if unit == 1 else tail.aggregate(_floor_array(unit, tail.start)))
        return CandleBars.concat(parts)

    def _day_block(self, model: _Model, block: int, lag: int) -> CandleBars:
        """Day candles of the complete UTC days of one block, every trade stored (cached)."""

        def make() -> CandleBars:
            d0 = block * _BLOCK_DAYS
            minutes = self._grid(
                model, d0 * MINUTES_PER_DAY, (d0 + _BLOCK_DAYS) * MINUTES_PER_DAY, lag
            ).bars()
            return minutes.aggregate(minutes.start // DAY_MS * DAY_MS)

        bars: CandleBars = self._blocks.get_or_make((model.index, block, lag), make)
        return bars

    def _day_bars(self, model: _Model, t0: int, t1: int, now: int, lag: int) -> CandleBars:
        """Day candles of [t0, t1): t0 day-aligned, t1 <= now; the trades before t1 stored
        before `now` count."""
        whole_end = self._settled_end(t1, now, lag) // DAY_MS * DAY_MS
        first_block = max(t0, model.listed_ms // DAY_MS * DAY_MS) // DAY_MS // _BLOCK_DAYS
        blocks = range(first_block, -(-(whole_end // DAY_MS) // _BLOCK_DAYS))
        parts = [self._day_block(model, block, lag) for block in blocks]
        # Only the outer blocks can stick out of the range.
        if parts:
            parts[0] = parts[0].between(t0, whole_end)
            parts[-1] = parts[-1].between(t0, whole_end)
        if t1 > whole_end:
            # Lagged trades can leave the day before t1's unsettled too: then two days here.
            minutes = self._minute_bars(model, 1, max(t0, whole_end), t1, now, lag)
            parts.append(minutes.aggregate(minutes.start // DAY_MS * DAY_MS))
        return CandleBars.concat(parts)

    def candle_bars(
        self,
        market: str,
        unit: Unit,
        start_ms: int,
        end_ms: int,
        now_ms: int,
        *,
        stored: bool = True,
    ) -> CandleBars:
        """Candles of `unit` starting in [start_ms, end_ms), as seen at `now_ms`, oldest first.

        Only trades before `now_ms` count, so the in-progress candle is partial and periods
        starting at or after `now_ms` do not exist. `stored` (REST's view): a trade counts
        once it is stored, `store_lag_ms` at most after its time, and a candle's timestamp is
        the stored time of its last trade; so right after a boundary the candle just ended
        can lack trades or be missing. `stored=False` is the at-once view of the WebSocket
        and the ticker (and both views are one when store_lag_ms is 0). Every timeframe
        aggregates the 1m candles of the same view. Units: minutes (1..240) or NAMED_UNITS.
        """
        model = self._models[market]
        check_unit(unit)
        lag = self._lag(stored)
        first = _period_ceil(unit, max(start_ms, period_floor(unit, model.listed_ms)))
        last_bound = min(end_ms, now_ms)
        if last_bound <= first:
            return CandleBars()
        last = period_floor(unit, last_bound - 1)
        data_end = min(period_shift(unit, last, 1), now_ms)
        if unit == "seconds":
            tr = self._grid(model, first // MINUTE_MS, -(-data_end // MINUTE_MS), lag).trades()
            mask = (tr.time >= first) & (tr.time < data_end) & (tr.stored < now_ms)
            return tr.select(mask).bars(SECOND_MS)
        if isinstance(unit, int):
            return self._minute_bars(model, unit, first, data_end, now_ms, lag)
        days = self._day_bars(model, first, data_end, now_ms, lag)
        return days if unit == "days" else days.aggregate(_floor_array(unit, days.start))

    def candles(
        self,
        market: str,
        unit: Unit,
        start_ms: int,
        end_ms: int,
        now_ms: int,
        *,
        stored: bool = True,
    ) -> pd.DataFrame:
        """`candle_bars` as a DataFrame with CandleBars.COLUMNS."""
        return self.candle_bars(market, unit, start_ms, end_ms, now_ms, stored=stored).to_frame()

    def settled_candles(self, market: str, unit: Unit, start_ms: int, end_ms: int) -> CandleBars:
        """REST's final candles of the periods that start in [start_ms, end_ms) and end by
        end_ms (a period cut by end_ms is left out), every trade counted: what any REST page
        shows for them from `period end + store_lag_ms` on."""
        bound = period_floor(unit, end_ms)
        return self.candle_bars(market, unit, start_ms, bound, bound + self.store_lag_ms)

    def newest_bars(
        self,
        market: str,
        unit: Unit,
        end_ms: int,
        count: int,
        now_ms: int,
        *,
        floor_ms: int | None = None,
        stored: bool = True,
    ) -> CandleBars:
        """The `count` newest candles starting before end_ms (as `candle_bars` sees them at
        now_ms), reaching back past periods without trades as far as needed: fewer only when
        the listing (or floor_ms, a lower bound on candle starts) is reached."""
        model = self._models[market]
        check_unit(unit)
        bottom = period_floor(unit, model.listed_ms)
        if floor_ms is not None:
            bottom = max(bottom, _period_ceil(unit, floor_ms))
        top = min(end_ms, now_ms)
        if top <= bottom or count < 1:
            return CandleBars()
        hi = period_shift(unit, period_floor(unit, top - 1), 1)
        # Windows of growing size, newest first: a market quiet for weeks costs a few calls.
        parts: list[CandleBars] = []
        found, span = 0, count
        while found < count and hi > bottom:
            lo = max(period_shift(unit, hi, -span), bottom)
            bars = self.candle_bars(market, unit, lo, min(hi, top), now_ms, stored=stored)
            parts.insert(0, bars)
            found += len(bars)
            hi, span = lo, span * 2
        bars = CandleBars.concat(parts)
        return bars.select(slice(max(0, len(bars) - count), None))

    def prev_day_close(
        self, market: str, before_ms: int, now_ms: int, *, stored: bool = True
    ) -> float | None:
        """Close of the latest day candle starting before `before_ms`, None if there is none."""
        day = self.last_day(market, before_ms, now_ms, stored=stored)
        return None if not len(day) else float(day.close[0])

    def last_day(
        self, market: str, before_ms: int, now_ms: int, *, stored: bool = True
    ) -> CandleBars:
        """The latest day candle starting before `before_ms` (one row), or no row."""
        floor = self._models[market].listed_ms // DAY_MS * DAY_MS
        end = before_ms
        while end > floor:
            start = max(end - _BLOCK_DAYS * DAY_MS, floor)
            bars = self.candle_bars(market, "days", start, end, now_ms, stored=stored)
            if len(bars):
                return bars.select(slice(-1, None))
            end = start
        return CandleBars()
