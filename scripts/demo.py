"""`make demo`: the main job, offline.

Starts the bundled Upbit simulator on a free loopback port, runs the real `upbit-cache fetch`
for 30 days of 1h candles of 20 KRW markets into a temporary data dir (twice, to show the
second run asking for nothing), then shows what was stored.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

import upbit_cache
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.times import now_ms


def main() -> None:
    with SimulatorServer(SimulatorConfig(rate=10)) as sim, tempfile.TemporaryDirectory() as tmp:
        listed = sim.history.listed_markets(now_ms())
        markets = [m.market for m in listed if m.market.startswith("KRW-")][:20]
        command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1h"]
        command += ["--days", "30", "--api-url", sim.url, "--data-dir", tmp]
        print(f"simulator at {sim.url}; data dir {tmp}\n")
        print("$ upbit-cache fetch <20 KRW markets> -t 1h --days 30", flush=True)
        subprocess.run(command, check=True)
        print("\n$ upbit-cache fetch ... (again: only what is missing)", flush=True)
        subprocess.run([*command, "--quiet"], check=True)

        root = Path(tmp)
        files = sorted(root.rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        print(
            f"\nstored: {len(files)} Parquet files, {size / 1024:.0f} KiB "
            f"under {root}/candles/timeframe=1h"
        )
        print("  e.g.", files[0].relative_to(root))
        table = ds.dataset(
            root / "candles" / "timeframe=1h", format="parquet", partitioning="hive"
        ).to_table()
        counts = table.group_by("market").aggregate(
            [("time", "count"), ("time", "min"), ("time", "max")]
        )
        print(f"\n{table.num_rows} candles as one Hive-partitioned dataset (pyarrow):")
        for row in counts.sort_by("market").to_pylist()[:5]:
            print(
                f"  {row['market']:<10} {row['time_count']:>4} candles  "
                f"{row['time_min']:%Y-%m-%d %H:%M} .. {row['time_max']:%Y-%m-%d %H:%M} UTC"
            )
        print(f"  ... ({len(counts)} markets; max close {pc.max(table['close']).as_py():,.0f} KRW)")
        frame = upbit_cache.load("KRW-BTC", "1h", data_dir=tmp)
        print("\nupbit_cache.load('KRW-BTC', '1h') -> pandas, last 3 rows:")
        print(frame.tail(3).to_string(index=False))


if __name__ == "__main__":
    main()
