"""Write the vcrpy cassettes the parser tests replay.

Default: build them from the real captured Upbit bodies in ../shared/upbit-samples/ (the
request each body answers is known from its file name). With --live: record fresh ones
against api.upbit.com through the product's own client (needs network access to Upbit).

    python scripts/record_cassettes.py [--samples DIR] [--out tests/cassettes]
    python scripts/record_cassettes.py --live [--out tests/cassettes/live]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from urllib.parse import urlencode

import yaml

ROOT = Path(__file__).resolve().parent.parent
API = "https://api.upbit.com/v1"
# The sample bodies carry no headers; these are what Upbit sends with a candle answer.
HEADERS = {
    "Content-Type": ["application/json;charset=UTF-8"],
    "Remaining-Req": ["group=candles; min=600; sec=9"],
}
# cassette name -> [(endpoint, query, sample file, wrap a lone object in an array)]
SAMPLES: dict[str, list[tuple[str, dict[str, str], str, bool]]] = {
    "krw_btc_1m_2020-02-20": [
        (
            "candles/minutes/1",
            {"market": "KRW-BTC", "count": "200", "to": "2020-02-20T11:20:00Z"},
            "smtm_upbit_1m_20200220_170000-20200220_202000.json",
            False,
        ),
        (
            "candles/minutes/1",
            {"market": "KRW-BTC", "count": "40", "to": "2020-02-20T12:00:00Z"},
            "smtm_upbit_1m_20200220_202000-20200220_210000.json",
            False,
        ),
    ],
    "krw_btc_3m_2020-02-20": [
        (
            "candles/minutes/3",
            {"market": "KRW-BTC", "count": "200", "to": "2020-02-20T01:00:00Z"},
            "smtm_upbit_3m_20200220_000000-20200220_100000.json",
            False,
        ),
        (
            "candles/minutes/3",
            {"market": "KRW-BTC", "count": "40", "to": "2020-02-20T03:00:00Z"},
            "smtm_upbit_3m_20200220_100000-20200220_120000.json",
            False,
        ),
        (
            "candles/minutes/3",
            {"market": "KRW-BTC", "count": "60", "to": "2020-02-20T11:00:00Z"},
            "smtm_upbit_3m_20200220_170000-20200220_200000.json",
            False,
        ),
    ],
    "krw_btc_1m_raw_wire": [
        (
            "candles/minutes/1",
            {"market": "KRW-BTC", "count": "1", "to": "2020-02-25T06:42:00Z"},
            "smtm_record_md_1m_single_candle_raw.json",
            True,
        ),
    ],
    "krw_btc_1s_2025-06-30": [
        (
            "candles/seconds",
            {"market": "KRW-BTC", "count": "1", "to": "2025-07-01T00:00:00Z"},
            "jkorf_GetKlines_seconds_body.json",
            False,
        ),
    ],
    "market_all": [
        (
            "market/all",
            {"is_details": "true"},
            "jkorf_GetSymbols_market_all_isDetails_body.json",
            False,
        ),
    ],
    "usdt_btc_1h_numbers_as_strings": [
        (
            "candles/minutes/60",
            {"market": "USDT-BTC", "count": "1", "to": "2024-03-13T12:00:00Z"},
            "ccxt_static_upbit_fetchOHLCV_1h_httpResponse.json",
            False,
        ),
    ],
}


def from_samples(samples: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, entries in SAMPLES.items():
        interactions = []
        for endpoint, query, file, wrap in entries:
            body = (samples / file).read_text()
            if wrap:
                body = "[" + body.strip() + "]"
            uri = f"{API}/{endpoint}?{urlencode(query)}"
            interactions.append(
                {
                    "request": {"body": None, "headers": {}, "method": "GET", "uri": uri},
                    "response": {
                        "body": {"string": body},
                        "headers": HEADERS,
                        "status": {"code": 200, "message": "OK"},
                        "url": uri,
                    },
                }
            )
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"interactions": interactions, "version": 1}))
        print(f"wrote {path.relative_to(ROOT)} ({len(interactions)} interactions)")


async def live(out: Path) -> None:
    import vcr

    from upbit_cache.collector.client import UpbitClient
    from upbit_cache.collector.config import ClientConfig
    from upbit_cache.timeframes import Timeframe
    from upbit_cache.times import to_ms

    out.mkdir(parents=True, exist_ok=True)
    recorder = vcr.VCR(record_mode="all", decode_compressed_response=True)
    async with UpbitClient(ClientConfig(rate=5)) as client:
        with recorder.use_cassette(str(out / "market_all.yaml")):
            await client.markets()
        for tf in ("1m", "3m", "1h", "1d"):
            with recorder.use_cassette(str(out / f"krw_btc_{tf}.yaml")):
                await client.candles("KRW-BTC", Timeframe.parse(tf), to_ms("2020-02-20T12:00"), 200)
    print(f"recorded live cassettes into {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=ROOT.parent / "shared" / "upbit-samples")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--live", action="store_true", help="record against api.upbit.com")
    args = parser.parse_args()
    if args.live:
        asyncio.run(live(args.out or ROOT / "tests" / "cassettes" / "live"))
    else:
        from_samples(args.samples, args.out or ROOT / "tests" / "cassettes")


if __name__ == "__main__":
    main()
