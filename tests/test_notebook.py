"""The library in a real Jupyter kernel (nbclient): a cell runs inside the kernel's event loop,
where `asyncio.run` refuses, so this is where the sync methods must go aside and the async
twins be awaited. The kernel is this virtualenv's Python, through a kernelspec written to a
temporary JUPYTER_PATH; everything it talks to is the simulator on loopback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DEADLINE, FAST_RATE, truth

from upbit_cache.simulator import SimulatorServer

KERNEL = "upbit-cache-test"
START, END = "2026-11-17T00:00:00Z", "2026-11-19T00:00:00Z"


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this interpreter, and every Jupyter and IPython dir in tmp_path."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # else jupyter_core warns of a migration
    for name, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ]:
        monkeypatch.setenv(name, str(tmp_path / "jupyter" / sub))
    return KERNEL


def run_notebook(kernel: str, cells: list[str], cwd: Path) -> list[list[dict[str, Any]]]:
    """Run `cells` in a fresh kernel; each cell's outputs. A cell that raises fails the test."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=DEADLINE,
        startup_timeout=DEADLINE,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return [list(cell.outputs) for cell in notebook.cells]


def text(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")


@pytest.mark.slow
def test_sync_and_async_calls_in_a_jupyter_cell(
    sim: SimulatorServer, tmp_path: Path, kernel: str
) -> None:
    data = tmp_path / "data"
    cells = [
        f"""
import asyncio
from upbit_cache import UpbitCache, Window
asyncio.get_running_loop()  # a cell runs inside the kernel's loop
cache = UpbitCache({str(data)!r}, api_url={sim.url!r}, rate={FAST_RATE})
window = Window.of(since={START!r}, until={END!r})
""",
        """
report = cache.fetch(["KRW-BTC"], timeframes="1h", window=window)
print(report.candles, len(report.failed))
""",
        f"""
frame = cache.get("KRW-BTC", "1h", {START!r}, {END!r})
print(len(frame), repr(float(frame["close"].iloc[-1])))
""",
        """
report = await cache.afetch(["KRW-ETH"], timeframes="1h", window=window)
print(report.candles, len(report.failed))
""",
        f"""
frame = await cache.aget("KRW-ETH", "1h", {START!r}, {END!r})
print(len(frame), repr(float(frame["close"].iloc[-1])))
""",
        "cache.close()",
    ]
    outputs = run_notebook(kernel, cells, tmp_path)
    btc, eth = (truth(sim, m, "1h", START, END) for m in ("KRW-BTC", "KRW-ETH"))
    assert text(outputs[1]) == "48 0\n"
    assert text(outputs[2]) == f"48 {float(btc['close'].iloc[-1])!r}\n"
    assert text(outputs[3]) == "48 0\n"
    assert text(outputs[4]) == f"48 {float(eth['close'].iloc[-1])!r}\n"
    # No "coroutine ... was never awaited" nor any other warning or error on the way.
    said = [o for cell in outputs for o in cell if o.get("name") == "stderr"]
    assert said == []
