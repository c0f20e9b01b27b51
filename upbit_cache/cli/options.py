"""The options and arguments the commands share or declare, as typed `Annotated` aliases.

Kept apart from the commands so that each command reads as parse -> one call -> render.
"""

from __future__ import annotations

from typing import Annotated

import typer

from upbit_cache.manager.scope import MAX_DAYS
from upbit_cache.store.datadir import ENV_DATA_DIR

DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        metavar="DIR|URI",
        envvar=ENV_DATA_DIR,
        help="Where the store lives: a folder, file:// or s3://bucket/prefix (default: the user "
        "data dir).",
        show_default=False,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        envvar="UPBIT_API_URL",
        help="Upbit REST base URL (default https://api.upbit.com).",
        show_default=False,
    ),
]
WsUrl = Annotated[
    str | None,
    typer.Option(
        "--ws-url",
        envvar="UPBIT_WS_URL",
        help="Upbit WebSocket URL (default wss://api.upbit.com/websocket/v1).",
        show_default=False,
    ),
]
Rate = Annotated[
    float,
    typer.Option(
        "--rate", metavar="N", min=0.1, max=1000, help="Candle requests per second at most."
    ),
]
LockTimeout = Annotated[
    float | None,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        min=0,
        max=86_400,
        help="Seconds to wait for another run writing the same series (default: no limit).",
        show_default=False,
    ),
]
Markets = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="MARKET",
        help="Markets such as KRW-BTC; none means every market of --quote.",
        show_default=False,
    ),
]
StoredMarkets = Annotated[
    list[str] | None,
    typer.Argument(
        help="Markets such as KRW-BTC; none means every stored market.", show_default=False
    ),
]
LiveMarkets = Annotated[
    list[str],
    typer.Argument(help="Markets to watch, e.g. KRW-BTC KRW-ETH.", show_default=False),
]
Quote = Annotated[
    str | None,
    typer.Option(
        "--quote", metavar="QUOTE", help="Every market of this quote currency (KRW, BTC, USDT)."
    ),
]
Timeframes = Annotated[
    str, typer.Option("-t", "--timeframe", help="Timeframes, comma-separated: 1h or 15m,1h,4h.")
]
OneTimeframe = Annotated[str, typer.Option("-t", "--timeframe", help="One timeframe.")]
SomeTimeframes = Annotated[
    str | None,
    typer.Option(
        "-t",
        "--timeframe",
        help="Only these timeframes, e.g. 1h or 15m,1h (default: all stored).",
        show_default=False,
    ),
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="TIME",
        help="Start, UTC unless an offset is given: 2026-01-01[T09:00][+09:00], or a time "
        "before now: -7d, -36h, -2w.",
        show_default=False,
    ),
]
Until = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="TIME",
        help="End (exclusive), as --since; default now.",
        show_default=False,
    ),
]
TimeRangeOption = Annotated[
    str | None,
    typer.Option(
        "--timerange",
        metavar="START-END",
        help="freqtrade's form, instead of --since/--until: 20250101-20250701 (UTC dates, end "
        "exclusive); 20250101- or -20250701 leave an end open.",
        show_default=False,
    ),
]
WholeDays = Annotated[
    int | None,
    typer.Option(
        "--days", min=1, max=MAX_DAYS, help="The last N days (default 30).", show_default=False
    ),
]
Days = Annotated[float, typer.Option("--days", min=0.01, max=MAX_DAYS, help="How far back.")]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Take only the K-th of N stable, disjoint parts of the markets (1/4 .. 4/4), so "
        "that N hosts split a backfill; give every host the same markets, timeframes and window.",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the summary.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="One line per market.")]
BaseTimeframe = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Base timeframe (default: the finest stored one dividing each).",
        show_default=False,
    ),
]

# prune
Keep = Annotated[
    str | None,
    typer.Option(
        "--keep",
        help="Delete candles older than this, every timeframe, e.g. 365d (default: keep all).",
        show_default=False,
    ),
]
Keep1m = Annotated[
    str | None,
    typer.Option(
        "--keep-1m", help="Retention for 1m candles, the bulk, e.g. 90d.", show_default=False
    ),
]
CompactAfter = Annotated[
    str,
    typer.Option("--compact-after", help="Compact hot partitions older than this (h, d, w)."),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print what would change and change nothing.")
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Age candles as if it were this time, e.g. 2026-11-01 (default: now). "
        "Leftover files are aged on the data dir's own clock.",
        show_default=False,
    ),
]

# screen-prep
Out = Annotated[str, typer.Option("--out", "-o", help="Output file, or - for stdout.")]
OutFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="parquet, csv or jsonl (default: from --out, else csv).",
        show_default=False,
    ),
]
Refresh = Annotated[
    bool, typer.Option("--refresh/--no-refresh", help="Fetch what is missing first.")
]
IncludeOpen = Annotated[
    bool,
    typer.Option(
        "--include-open",
        help="Add each market's candle still in progress "
        "(one request per market; a `closed` column marks it).",
    ),
]
MinValue = Annotated[
    float | None,
    typer.Option(
        "--min-value",
        min=0,
        help="Keep markets that traded at least this much (quote currency) in the last 24 hours.",
        show_default=False,
    ),
]
Top = Annotated[
    int | None,
    typer.Option(
        "--top",
        min=1,
        max=100_000,
        help="Keep the N markets that traded most in 24 hours.",
        show_default=False,
    ),
]
ScreenVerbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Per-market lines and the memory hit rate.")
]

# export
MarketsFile = Annotated[
    typer.FileText | None,
    typer.Option(
        "--markets-file",
        metavar="FILE",
        help="Read the markets from FILE (- for stdin): one a line; blank lines and # comments "
        "are skipped.",
        show_default=False,
    ),
]
ExportTimeframes = Annotated[
    str,
    typer.Option(
        "-t", "--timeframe", metavar="TF[,TF...]", help="Timeframes, comma-separated: 1h or 1m,1h."
    ),
]
ExportDays = Annotated[
    float | None,
    typer.Option(
        "--days",
        metavar="N",
        min=0.01,
        max=MAX_DAYS,
        help="The last N days, instead of --since.",
        show_default=False,
    ),
]
ExportFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        metavar="csv|jsonl|parquet",
        help="Output format (default: from --out, else csv).",
        show_default=False,
    ),
]
ExportOut = Annotated[
    str, typer.Option("--out", "-o", metavar="FILE|-", help="Output file, or - for stdout.")
]
Tz = Annotated[
    str,
    typer.Option(
        "--tz",
        metavar="ZONE",
        help="Write text times in this zone, with its offset: UTC, Asia/Seoul, ... "
        "(Parquet keeps UTC timestamps).",
    ),
]
Fill = Annotated[
    bool,
    typer.Option(
        "--fill",
        help="Add a candle for every period without trades (Upbit has none): the previous "
        "close as open, high, low and close, volume and value 0; between each series' first "
        "and last candle.",
    ),
]
ExportQuiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors: no progress, no summary.")
]

# live
Jsonl = Annotated[
    bool, typer.Option("--jsonl", help="One JSON line per candle update or close on stdout.")
]
NoStore = Annotated[
    bool, typer.Option("--no-store", help="Do not append closed candles to the store.")
]
LiveTimeframes = Annotated[
    str, typer.Option("-t", "--timeframe", help="Timeframes to build, e.g. 1m,15m,1h.")
]

# verify
Repair = Annotated[
    bool,
    typer.Option(
        "--repair",
        help="Move bad files to <data-dir>/quarantine/ and forget their spans, so the next "
        "fetch asks for exactly those again.",
    ),
]

# info
AsJson = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (for scripts) instead.")
]
