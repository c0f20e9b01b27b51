"""Rough edges of issue 21, each as a user meets it: one number style in every text output,
`--out` extensions, API misuse, missing buckets, "did you mean" hints, prune's refusal."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from conftest import NOW, S3Server, plain, seed
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.cli.live_view import event_json
from upbit_cache.manager.export import EXPORT_SCHEMA
from upbit_cache.output.text import _iso, float_texts, json_number, time_text
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.live import Candle, CandleEvent
from upbit_cache.times import to_ms

runner = CliRunner()
PRICES = ["open", "high", "low", "close", "volume", "value"]
DAY = 86_400_000


def cli(*args: str) -> tuple[int, bytes, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.stdout_bytes, plain(done.stderr)


@pytest.fixture
def krw(sim: SimulatorServer, tmp_path: Path) -> Path:
    """Two days of KRW-BTC 1h, whose prices are whole won (integral floats)."""
    seed(CandleStore(tmp_path), sim.history, "KRW-BTC", "1h", to_ms(NOW) - 2 * DAY, to_ms(NOW))
    return tmp_path


def export(root: Path, *args: str) -> bytes:
    code, out, err = cli(
        "export", "KRW-BTC", "-t", "1h", "--since", "2026-11-18", "--until", NOW, "--no-refresh",
        "--data-dir", str(root), *args,
    )  # fmt: skip
    assert code == 0, err
    return out


# One number style: floats always written as floats


def test_readers_infer_float_for_krw_prices_from_csv_and_json_lines(
    krw: Path, tmp_path: Path
) -> None:
    csv_bytes, jsonl = export(krw), export(krw, "-f", "jsonl")
    header, first = csv_bytes.decode().splitlines()[:2]
    assert header == ",".join(EXPORT_SCHEMA.names)
    assert first.startswith("KRW-BTC,1h,2026-11-18T00:00:00.000Z,")
    assert all(v.endswith(".0") for v in first.split(",")[3:7]), first  # whole won, as floats

    frame = pd.read_csv(io.BytesIO(csv_bytes))
    assert all(frame[c].dtype == "float64" for c in PRICES), frame.dtypes
    # pandas' read_json makes whole floats int64 by its own rule unless told not to infer;
    # then it keeps what the text says (it said 199162000, an int, before).
    frame = pd.read_json(io.BytesIO(jsonl), lines=True, dtype=False)
    assert all(frame[c].dtype == "float64" for c in PRICES), frame.dtypes

    (tmp_path / "x.csv").write_bytes(csv_bytes)
    (tmp_path / "x.jsonl").write_bytes(jsonl)
    for path in ("x.csv", "x.jsonl"):
        reader = "read_csv" if path.endswith(".csv") else "read_json"
        types = duckdb.sql(f"DESCRIBE SELECT * FROM {reader}('{tmp_path / path}')").fetchall()
        found = {name: kind for name, kind, *_ in types}
        assert all(found[c] == "DOUBLE" for c in PRICES), (path, found)


def test_live_json_lines_are_export_lines_with_two_keys_more(krw: Path) -> None:
    for tz in ("UTC", "Asia/Seoul"):
        line = export(krw, "-f", "jsonl", "--tz", tz).decode().splitlines()[0]
        row = json.loads(line)
        candle = Candle(
            "KRW-BTC", Timeframe.parse("1h"), to_ms(row["time"]),
            *(row[c] for c in PRICES), to_ms(row["time"]) + 59_000,
        )  # fmt: skip
        live = event_json(CandleEvent("close", candle), tz)
        assert (
            live
            == line[:-1] + f',"event":"close","last_trade":"{time_text(candle.last_trade, tz)}"}}'
        )


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=20))
def test_one_value_is_written_as_a_column_of_them_is(values: list[float]) -> None:
    assert [json_number(v) for v in values] == float_texts(pa.array(values)).to_pylist()
    for v, text in zip(values, (json_number(v) for v in values), strict=True):
        assert float(text) == v and math.copysign(1, float(text)) == math.copysign(1, v)
        assert any(mark in text for mark in ".e")  # a float to every reader


@given(
    st.integers(min_value=-(10**12), max_value=2 * 10**12),  # to 2033: arrow and zoneinfo agree
    st.sampled_from(["UTC", "Asia/Seoul", "America/New_York", "Asia/Kathmandu"]),
)
def test_one_time_is_written_as_a_column_of_them_is(ms: int, tz: str) -> None:
    times = pa.array([ms]).cast(pa.timestamp("ms", tz="UTC"))
    assert time_text(ms, tz) == _iso(times, tz).to_pylist()[0]


# `--out`: the name says what is written, compression included, or it is refused


@pytest.mark.parametrize(
    ("name", "fmt", "says"),
    [
        ("out.xlsx", None, "cannot tell what to write to {out}: its name ends in .xlsx"),
        ("out.csv.bz2", None, "cannot compress {out} as .bz2: name it .gz (gzip) or .zst"),
        ("out.csv.zstd", None, "as .zstd (did you mean .zst?)"),
        ("out.parquet.gz", None, "will not compress Parquet again ({out})"),
        ("out.csv", "jsonl", "{out} names csv but the format asked for is jsonl"),
    ],
)
def test_a_misleading_out_name_is_refused(
    krw: Path, tmp_path: Path, name: str, fmt: str | None, says: str
) -> None:
    out = tmp_path / name
    args = ["export", "KRW-BTC", "-t", "1h", "--days", "2", "--no-refresh", "-o", str(out)]
    code, _, err = cli(*args, *(["-f", fmt] if fmt else []), "--data-dir", str(krw))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert says.format(out=out) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candles", "fetched"]  # nothing made


def test_an_unknown_suffix_is_written_when_the_format_is_given(krw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.xlsx"
    export(krw, "-o", str(out), "-f", "csv")
    assert out.read_bytes() == export(krw)


@pytest.mark.parametrize("name", ["out.csv.gz", "out.jsonl.gz", "out.csv.zst", "out.ndjson.zst"])
def test_compression_follows_the_out_name(krw: Path, tmp_path: Path, name: str) -> None:
    import gzip

    out = tmp_path / name
    export(krw, "-o", str(out), "-q")
    plain_text = export(krw, "-f", "csv" if ".csv" in name else "jsonl")
    data = out.read_bytes()
    if name.endswith(".gz"):
        assert data[:2] == b"\x1f\x8b" and gzip.decompress(data) == plain_text
    else:
        assert data[:4] == b"\x28\xb5\x2f\xfd"  # zstandard's magic number
        assert pa.input_stream(pa.py_buffer(data), compression="zstd").read() == plain_text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # renamed
    if name == "out.csv.gz":  # readers take the name's word too (pandas' zstd needs a module)
        assert len(pd.read_csv(out)) == plain_text.count(b"\n") - 1


def test_the_summary_counts_the_bytes_the_file_holds(krw: Path, tmp_path: Path) -> None:
    from upbit_cache.manager.cache import UpbitCache
    from upbit_cache.manager.scope import Window

    out = tmp_path / "out.csv.gz"
    window = Window.of(since="2026-11-18", until=NOW)
    report = UpbitCache(krw).export(["KRW-BTC"], window=window, out=str(out), refresh=False)
    assert report.bytes == out.stat().st_size < len(export(krw)) / 2
    parquet = tmp_path / "out.parquet"  # the library takes the format from the name too
    UpbitCache(krw).export(["KRW-BTC"], window=window, out=str(parquet), refresh=False)
    assert parquet.read_bytes()[:4] == b"PAR1"


@pytest.mark.slow
def test_a_kept_screen_table_is_compressed_as_named(sim: SimulatorServer, tmp_path: Path) -> None:
    import gzip

    out, data = tmp_path / "screen.csv.gz", tmp_path / "data"
    args = ["screen-prep", "KRW-BTC", "--days", "2", "-o", str(out), "--data-dir", str(data)]
    args += ["--api-url", sim.url, "--rate", "200"]
    for run in ("built", "kept"):
        code, _, err = cli(*args)
        assert code == 0, err
        assert ("kept table" in err) == (run == "kept")
        text = gzip.decompress(out.read_bytes())
        assert text.startswith(b"market,time,open,") and text.count(b"\n") == 49, run


# Python API misuse is a UsageError that says how to call it


def test_api_misuse_is_a_usage_error_naming_the_argument(krw: Path) -> None:
    import upbit_cache
    from upbit_cache import (
        InvalidMarketError,
        InvalidRangeError,
        InvalidTimeframeError,
        UpbitCache,
        UsageError,
    )

    cache = UpbitCache(krw)
    cases: list[tuple[object, type[UsageError], str]] = [
        (
            lambda: upbit_cache.load(["KRW-BTC", "KRW-ETH"], "1h", data_dir=krw),
            InvalidMarketError,
            "load: market takes one market code such as 'KRW-BTC', not a list of them",
        ),
        (lambda: cache.load("KRW-BTC", 60), InvalidTimeframeError, "not int 60"),
        (
            lambda: cache.fetch("KRW-BTC"),
            InvalidMarketError,
            "UpbitCache.fetch: markets takes a list of market codes, not the str 'KRW-BTC': "
            "pass ['KRW-BTC']",
        ),
        (lambda: cache.info(markets="KRW-BTC"), InvalidMarketError, "pass ['KRW-BTC']"),
        (
            lambda: cache.export(["KRW-BTC"], timeframes=["1h", 4]),
            InvalidTimeframeError,
            "UpbitCache.export: timeframes[1] takes a timeframe such as '1h'",
        ),
        (lambda: cache.export(["KRW-BTC"], window="30d"), UsageError, "window takes a Window"),
        (lambda: cache.load("KRW-BTC", "1h", [2026]), InvalidRangeError, "start takes a time"),
        (lambda: cache.load("KRW-BTC", "1h", fill="yes"), UsageError, "fill takes True or"),
        (lambda: cache.load("KRW-BTC"), UsageError, "missing a required argument"),
        (lambda: UpbitCache(data_dir=5), UsageError, "UpbitCache: data_dir takes a path"),
    ]
    for call, kind, says in cases:
        with pytest.raises(kind) as found:
            call()  # type: ignore[operator]
        assert says in str(found.value)
    # Right: a list of timeframe names, a Path, a Timeframe.
    frame = cache.load("KRW-BTC", Timeframe.parse("1h"), "2026-11-19", NOW)
    assert len(frame) == 24
    assert cache.info(["KRW-BTC"], ["1h"])[0].candles == 48
    assert len(upbit_cache.load("KRW-BTC", "4h", "2026-11-19", NOW, data_dir=krw)) == 6


# A missing bucket or prefix is an error, not an empty store

READERS = {
    "info": ["info"],
    "verify": ["verify"],
    "prune": ["prune"],
    "export": ["export", "KRW-BTC", "--days", "1", "--no-refresh"],
    "resample": ["resample", "-t", "4h"],
    "screen-prep": ["screen-prep", "KRW-BTC", "--no-refresh"],
}


@pytest.mark.parametrize("command", list(READERS))
def test_a_missing_bucket_or_prefix_is_exit_2_for_every_reader(s3: S3Server, command: str) -> None:
    bucket = "misspelt-bucket-upbit-cache"
    for where, why in (
        (f"s3://{bucket}/x", f"there is no bucket {bucket} (a fetch creates the prefix, not it)"),
        (s3.new_dir(), "nothing was fetched there (a fetch creates it)"),
    ):
        code, out, err = cli(*READERS[command], "--data-dir", where)
        assert code == 2 and out == b"", err
        assert err == f"upbit-cache: error: no data dir at {where}: {why}\n"


def test_a_missing_bucket_is_named_by_the_library_and_by_fetch(
    s3: S3Server, sim: SimulatorServer
) -> None:
    import upbit_cache
    from upbit_cache import StorageError

    bucket = "misspelt-bucket-upbit-cache"
    with pytest.raises(StorageError, match=f"no data dir at s3://{bucket}/x: there is no bucket"):
        upbit_cache.load("KRW-BTC", "1h", data_dir=f"s3://{bucket}/x")
    with pytest.raises(StorageError, match="nothing was fetched there"):
        upbit_cache.load("KRW-BTC", "1h", data_dir=s3.new_dir())  # was an empty frame
    code, _, err = cli("fetch", "KRW-BTC", "--days", "1", "--api-url", sim.url, "--data-dir",
                       f"s3://{bucket}/x")  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert f"cannot write the data dir s3://{bucket}/x: there is no bucket {bucket}; create" in err


# "Did you mean": one line, exit 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["KRW-BTC,KRW-ETH"], "'KRW-BTC,KRW-ETH': give one market per argument: KRW-BTC KRW-ETH"),
        (["BTC-KRW"], "'BTC-KRW': did you mean KRW-BTC? (Upbit writes QUOTE-BASE)"),
        (["BTC/KRW"], "'BTC/KRW': did you mean KRW-BTC?"),  # ccxt's BASE/QUOTE
        (["eth/btc"], "'eth/btc': did you mean BTC-ETH?"),
        (["KRW-BTC", "-t", "60m"], "unsupported timeframe '60m': did you mean 1h?"),
        (["KRW-BTC", "-t", "1m,1H"], "unsupported timeframe '1H': did you mean 1h?"),
        (["KRW-BTC", "-t", "24h"], "unsupported timeframe '24h': did you mean 1d?"),
        (["KRW-BTC", "--tz", "Seoul"], "unknown time zone 'Seoul': did you mean Asia/Seoul?"),
    ],
)
def test_a_natural_slip_gets_a_hint(
    sim: SimulatorServer, tmp_path: Path, args: list[str], says: str
) -> None:
    code, out, err = cli("export", *args, "--days", "1", "--api-url", sim.url,
                         "--data-dir", str(tmp_path))  # fmt: skip
    assert code == 2 and out == b"" and err.count("\n") == 1, err
    assert err.startswith("upbit-cache: error: ") and says in err
    assert sim.stats()["requests"] == 0  # refused before asking Upbit anything


def test_kst_is_seoul_and_help_says_so(krw: Path) -> None:
    first = json.loads(export(krw, "-f", "jsonl", "--tz", "KST").splitlines()[0])
    assert first["time"] == "2026-11-18T09:00:00.000+09:00"
    code, out, _ = cli("export", "--help")
    assert code == 0 and "Asia/Seoul (or KST)" in out.decode()


def test_a_market_listed_the_other_way_round_is_hinted() -> None:
    from upbit_cache.errors import UnknownMarketError
    from upbit_cache.manager.scope import resolve_markets

    with pytest.raises(UnknownMarketError, match=r"does not list BTC-USDT \(did you mean USDT-BTC"):
        resolve_markets(["KRW-BTC", "USDT-BTC"], ["BTC-USDT"])
    with pytest.raises(UnknownMarketError, match=r"does not list KRW-NOPE$"):
        resolve_markets(["KRW-BTC"], ["KRW-NOPE"])
