"""Offline stand-in for api.upbit.com, the ground truth for upbit_cache's tests and benchmarks.

Independent of the rest of upbit_cache on purpose: it only uses the standard library, numpy,
pandas and aiohttp.
"""

from .app import RateLimiter, build_app, parse_to
from .clock import SimClock, to_epoch_ms
from .control import FAULT_KINDS, WS_FAULT_KINDS, FaultQueue, Stats
from .history import MINUTE_UNITS, NAMED_UNITS, CandleBars, History, MarketInfo, period_floor
from .server import SimulatorConfig, SimulatorServer
from .ws import CANDLE_TYPES, WS_PATH, WsHub, WsSettings

__all__ = [
    "CANDLE_TYPES",
    "FAULT_KINDS",
    "MINUTE_UNITS",
    "NAMED_UNITS",
    "WS_FAULT_KINDS",
    "WS_PATH",
    "CandleBars",
    "FaultQueue",
    "History",
    "MarketInfo",
    "RateLimiter",
    "SimClock",
    "SimulatorConfig",
    "SimulatorServer",
    "Stats",
    "WsHub",
    "WsSettings",
    "build_app",
    "parse_to",
    "period_floor",
    "to_epoch_ms",
]
