"""`fetch --dask`: a Dask cluster of worker processes, each asking its own simulator process (its
own rate budget, as separate IPs have), all writing one `s3://` data dir on moto's server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from conftest import DEADLINE, NOW, Procs, S3Server, run_fetch, wait_for

from upbit_cache import UpbitCache, Window
from upbit_cache.manager.dask_plugin import profiler_may_deadlock
from upbit_cache.manager.fetch import MarketOutcome
from upbit_cache.simulator.server import SimulatorServer

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA"]
RATE = 10  # each simulator's budget, and every client's
THREADS = 4  # tasks at once in each worker process (one client between them)
RUN = 200  # seconds a whole fetch may take on a loaded machine (under pytest's timeout)


class Sim:
    """A simulator process of its own (its own budget), frozen at NOW like the shared one."""

    def __init__(self, procs: Procs, *flags: str) -> None:
        command = [sys.executable, "-m", "upbit_cache.simulator", "--port", "0"]
        command += ["--rate", str(RATE), "--clock", NOW, "--frozen", *flags]
        self.proc = procs.popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on " in line, line
        self.url = line.rsplit(" ", 1)[1].strip()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=10) as answer:
            stats: dict[str, Any] = json.loads(answer.read())
        return stats


class Cluster:
    """`dask scheduler` and one `dask worker` (a nanny and its worker process) per simulator,
    each in a session of its own so that nothing of it outlives the test."""

    def __init__(self, procs: Procs, tmp: Path, sims: list[Sim], threads: int = THREADS) -> None:
        self.procs, self.sessions, self.tmp = procs, [], tmp
        file = tmp / "scheduler.json"
        self.scheduler = self._start(
            ["distributed.cli.dask_scheduler", "--scheduler-file", str(file), "--port", "0"],
            ["--no-dashboard"],
            {},
            "scheduler",
        )
        wait_for(lambda: file.exists() and file.stat().st_size > 0, "the scheduler's file")
        self.address = str(json.loads(file.read_text())["address"])
        self.nannies = []
        for i, sim in enumerate(sims, start=1):
            env = {"UPBIT_API_URL": sim.url, "UPBIT_CACHE_RUNTIME_DIR": str(tmp / f"host{i}")}
            worker = ["distributed.cli.dask_worker", self.address, "--name", f"w{i}"]
            flags = ["--nthreads", str(threads), "--no-dashboard"]
            self.nannies.append(self._start(worker, flags, env, f"w{i}"))
        wait_for(lambda: all(self.worker_pid(n) for n in self.nannies), "the workers")

    def _start(self, module: list[str], flags: list[str], env: dict[str, str], name: str) -> Any:
        with open(self.tmp / f"{name}.log", "wb") as log:  # shown if the test fails
            proc = self.procs.popen(
                [sys.executable, "-m", *module, *flags],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.sessions.append(proc.pid)
        return proc

    @staticmethod
    def worker_pid(nanny: Any) -> int | None:
        """The worker process under a nanny (not multiprocessing's resource tracker)."""
        for task in Path(f"/proc/{nanny.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"resource_tracker" not in cmdline:
                    return int(child)
        return None

    def sampling(self) -> list[bool]:
        """Whether each worker runs Dask's statistical profiler (its stack sampler)."""
        with distributed.Client(self.address, timeout=30) as client:
            found = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        return sorted(found.values())

    def alive(self) -> list[int]:
        """Every process still running in the cluster's sessions."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) in self.sessions:
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)
        for proc in self.procs.started:
            if proc.pid in self.sessions:
                proc.wait(timeout=DEADLINE)
        wait_for(lambda: not self.alive(), "the cluster's processes to end")


@pytest.fixture
def cluster(procs: Procs, tmp_path: Path, s3: S3Server) -> Iterator[tuple[Cluster, list[Sim]]]:
    """Two workers, each its own simulator (its IP) and runtime dir (its host), every one
    with the S3 settings (started after the S3 server)."""
    sims = [Sim(procs), Sim(procs)]
    made = Cluster(procs, tmp_path, sims)
    try:
        yield made, sims
    finally:
        made.close()
        for log in sorted(tmp_path.glob("*.log")):  # pytest shows it when the test failed
            print(f"== {log.name}", *log.read_text(errors="replace").splitlines()[-40:], sep="\n")
        assert not made.alive()  # no worker survives the test


def fetch_cli(procs: Procs, api_url: str, data_dir: str, *args: str) -> subprocess.Popen[str]:
    """`upbit-cache fetch` as its own process; the client plans against `api_url` (its own
    environment: the workers keep theirs)."""
    command = [sys.executable, "-m", "upbit_cache", "fetch", *MARKETS, "-t", "1m", "-t", "5m"]
    command += ["--days", "2", "--rate", str(RATE), "--data-dir", data_dir, *args]
    env = {**os.environ, "UPBIT_API_URL": api_url}
    return procs.popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(run: subprocess.Popen[str]) -> str:
    """The fetch's stdout once it exited 0; what it said if it did not, or did not end."""
    try:
        out, err = run.communicate(timeout=RUN)
    except subprocess.TimeoutExpired:
        run.kill()
        out, err = run.communicate()
        raise AssertionError(f"fetch --dask did not end in {RUN} s: {out}{err}") from None
    assert run.returncode == 0, err
    return out


def dataset(uri: str) -> pd.DataFrame:
    fs, path = pafs.FileSystem.from_uri(uri)
    found = ds.dataset(f"{path}/candles", filesystem=fs, format="parquet", partitioning="hive")
    frame = found.to_table().to_pandas()
    frame["timeframe"] = frame["timeframe"].astype(str)
    frame["market"] = frame["market"].astype(str)
    return frame.sort_values(["timeframe", "market", "time"]).reset_index(drop=True)


def exact(uri: str, sim: SimulatorServer, tmp: Path) -> None:
    """The data dir holds what an unsharded local fetch stores, each row once, and verifies."""
    reference = tmp / "reference"
    run_fetch(sim.url, reference, MARKETS, "1m,5m", days=2)
    stored, expected = dataset(uri), dataset(str(reference))
    assert not stored.duplicated(["timeframe", "market", "time"]).any()
    assert len(stored) > 0 and set(stored["timeframe"]) == {"1m", "5m"}
    columns = [c for c in expected.columns if c != "date"]
    pd.testing.assert_frame_equal(stored[columns], expected[columns], rtol=1e-9)
    verify = subprocess.run(
        [sys.executable, "-m", "upbit_cache", "verify", "--data-dir", uri],
        capture_output=True,
        text=True,
        timeout=RUN,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_two_workers_two_ips_equal_a_local_fetch(
    cluster: tuple[Cluster, list[Sim]], procs: Procs, s3: S3Server, sim: SimulatorServer, tmp_path
) -> None:
    made, sims = cluster
    uri = s3.new_dir("dask")
    out = finish(fetch_cli(procs, sims[0].url, uri, "--dask", made.address, "-v"))
    lines = out.splitlines()
    assert lines[0].startswith("6 markets, "), out
    assert "0 429s" in lines[0] and "derived 5m" in lines[0], (out, [s.stats() for s in sims])
    workers = sorted(line.split(":")[0] for line in lines[1:])
    assert workers == ["worker w1", "worker w2"], out  # both took tasks
    for each in sims:
        stats = each.stats()
        assert stats["rate_limited"] == 0
        assert stats["candle_requests"] > 0  # every IP did its share
    total = sum(s.stats()["candle_requests"] for s in sims)
    assert total == 6 * 15  # 2 days of 1m a market: 15 pages, each asked once
    exact(uri, sim, tmp_path)
    # Where Dask's stack sampling can deadlock the interpreter, the workers no longer sample.
    assert made.sampling() == [not profiler_may_deadlock()] * 2


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_replaced_and_the_result_is_exact(
    cluster: tuple[Cluster, list[Sim]], procs: Procs, s3: S3Server, sim: SimulatorServer, tmp_path
) -> None:
    made, sims = cluster
    uri = s3.new_dir("dask-kill")
    run = fetch_cli(procs, sims[0].url, uri, "--dask", made.address)
    wait_for(lambda: sims[1].stats()["candle_requests"] >= 8, "w2 to be mid-run")
    victim = made.worker_pid(made.nannies[1])
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    began = time.monotonic()
    wait_for(
        lambda: (made.worker_pid(made.nannies[1]) or victim) != victim or run.poll() is not None,
        "the nanny to start another worker",
    )
    out = finish(run)
    assert time.monotonic() - began < RUN
    assert "0 429s" in out.splitlines()[0], out
    for each in sims:
        assert each.stats()["rate_limited"] == 0
    total = sum(s.stats()["candle_requests"] for s in sims)
    # What the killed task had written stays: its retry asks again only the pages in flight.
    assert 6 * 15 <= total <= 6 * 15 + 9  # ≤ 10% sent again
    exact(uri, sim, tmp_path)
    # The worker the nanny started again samples no stacks either, where that may deadlock.
    assert made.sampling() == [not profiler_may_deadlock()] * 2


@pytest.mark.slow
def test_a_local_cluster_on_one_host_shares_its_budget(
    procs: Procs, sim: SimulatorServer, tmp_path: Path
) -> None:
    """`local:2`: two worker processes on this host, one IP: one budget (the host cell)."""
    one = Sim(procs)
    data = tmp_path / "shared"
    env = {**os.environ, "UPBIT_CACHE_RUNTIME_DIR": str(tmp_path / "host")}
    command = [sys.executable, "-m", "upbit_cache", "fetch", *MARKETS, "-t", "1m", "-t", "5m"]
    command += ["--days", "2", "--rate", str(RATE), "--data-dir", str(data)]
    command += ["--api-url", one.url, "--dask", "local:2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN)
    assert done.returncode == 0, done.stderr
    assert "0 429s" in done.stdout and one.stats()["rate_limited"] == 0
    assert one.stats()["candle_requests"] == 6 * 15
    exact(str(data), sim, tmp_path)


class Recorder:
    """A Progress that notes when each page and each market's end were told."""

    def __init__(self) -> None:
        self.pages: list[tuple[float, int]] = []
        self.ends: list[float] = []

    def on_start(self, jobs: int) -> None:
        pass

    def on_page(self, candles: int) -> None:
        self.pages.append((time.monotonic(), candles))

    def on_done(self, outcome: MarketOutcome) -> None:
        self.ends.append(time.monotonic())


@pytest.mark.slow
def test_the_bar_follows_each_page_as_it_lands(
    procs: Procs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    one = Sim(procs)
    monkeypatch.setenv("UPBIT_CACHE_RUNTIME_DIR", str(tmp_path / "host"))  # the workers' too
    cache = UpbitCache(tmp_path / "store", api_url=one.url, rate=RATE)
    seen = Recorder()
    report = cache.fetch(
        MARKETS[:2], timeframes="1m", window=Window(days=2), progress=seen, dask="local:1"
    )
    assert report.failed == [] and one.stats()["candle_requests"] == 2 * 15
    # Pages told as they land on the worker, long before its task ends: many before the first
    # market's end, every candle once.
    before = [t for t, _ in seen.pages if t < seen.ends[0]]
    assert len(before) >= 10, (len(before), len(seen.pages))
    assert sum(c for _, c in seen.pages) == report.candles and len(seen.ends) == 2


@pytest.mark.slow
def test_the_largest_jobs_go_first(procs: Procs, sim: SimulatorServer, tmp_path: Path) -> None:
    """One worker of one thread runs the jobs one by one: those whose records lack most
    come first."""
    one = Sim(procs)
    made = Cluster(procs, tmp_path, [one], threads=1)
    try:
        data = tmp_path / "store"
        run_fetch(sim.url, data, MARKETS[:3], "1m", days=1)  # the first three lack one day only
        command = [sys.executable, "-m", "upbit_cache", "fetch", *MARKETS, "-t", "1m"]
        command += ["--days", "2", "--rate", str(RATE), "--data-dir", str(data)]
        command += ["--api-url", one.url, "--dask", made.address]
        done = subprocess.run(command, capture_output=True, text=True, timeout=RUN)
    finally:
        made.close()
    assert done.returncode == 0, done.stderr
    order = [m for line in done.stderr.splitlines() for m in MARKETS if f" {m} 1m: " in line]
    assert set(order[:3]) == set(MARKETS[3:]) and set(order[3:]) == set(MARKETS[:3]), order
    assert one.stats()["candle_requests"] == 3 * 15 + 3 * 8


@pytest.mark.slow
def test_in_a_fixed_window_markets_listed_late_go_last(procs: Procs, tmp_path: Path) -> None:
    """Weighed from their first candles on the workers first: on an empty store the records
    say every job is alike, the listings say otherwise."""
    since, until = "2026-11-16T00:00:00Z", "2026-11-19T00:00:00Z"  # 3 days of 1m: 22 pages
    young = {"KRW-BTC": "2026-11-18T12:00:00Z", "KRW-ETH": "2026-11-17T00:00:00Z"}
    listed = [f"--listing={m}={t}" for m, t in young.items()]
    sims = [Sim(procs, *listed), Sim(procs, *listed)]
    made = Cluster(procs, tmp_path, sims, threads=1)  # two workers, a job at a time each
    try:
        command = [sys.executable, "-m", "upbit_cache", "fetch", *MARKETS[:4], "-t", "1m"]
        command += ["--since", since, "--until", until, "--rate", str(RATE)]
        command += ["--data-dir", str(tmp_path / "store"), "--api-url", sims[0].url]
        done = subprocess.run(
            [*command, "--dask", made.address], capture_output=True, text=True, timeout=RUN
        )
    finally:
        made.close()
    assert done.returncode == 0, done.stderr
    order = [m for line in done.stderr.splitlines() for m in MARKETS if f" {m} 1m: " in line]
    # The two old markets first, one on each worker; then the young ones.
    assert set(order[:2]) == {"KRW-XRP", "KRW-SOL"} and set(order[2:]) == set(young), order
    # One probe per market besides the jobs' own requests (the summary's).
    summary = done.stdout.splitlines()[0]
    jobs = int(re.search(r"candles written, ([0-9,]+) requests", summary)[1].replace(",", ""))
    assert sum(s.stats()["candle_requests"] for s in sims) == jobs + 4, summary


def test_a_bad_scheduler_is_one_line(tmp_path: Path, sim: SimulatorServer) -> None:
    command = [sys.executable, "-m", "upbit_cache", "fetch", "KRW-BTC", "--days", "1"]
    command += ["--data-dir", str(tmp_path), "--api-url", sim.url, "--dask", "udp://nowhere"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "scheduler address" in done.stderr
    shard = subprocess.run(
        [*command[:-1], "local:1", "--shard", "1/2"], capture_output=True, text=True, timeout=RUN
    )
    assert shard.returncode == 2 and "do not mix" in shard.stderr


def test_the_cli_start_up_does_not_import_dask() -> None:
    code = (
        "import sys, upbit_cache.cli, upbit_cache.cli.commands.fetch; print('dask' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_without_distributed_it_says_how_to_install_it(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    # An interpreter where `import distributed` fails, as where it is not installed.
    code = (
        "import sys; sys.modules['distributed'] = None; from upbit_cache.cli import run; "
        f"sys.argv = ['upbit-cache', 'fetch', 'KRW-BTC', '--days', '1', '--data-dir', "
        f"{str(tmp_path)!r}, '--api-url', {sim.url!r}, '--dask', 'local:2']; run()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "pip install 'distributed>=2024.1'" in done.stderr
    assert sim.stats()["candle_requests"] == 0  # refused before any request


@pytest.mark.parametrize(
    ("version", "deadlocks"),
    [((3, 11, 7), True), ((3, 11, 9), False), ((3, 12, 2), True), ((3, 12, 3), False)],
)
def test_the_profiler_is_stopped_only_where_cpython_may_deadlock(
    version: tuple[int, int, int], deadlocks: bool
) -> None:
    # python/cpython#106883: fixed in 3.11.9 and 3.12.3 (and every 3.13).
    assert profiler_may_deadlock(version) is deadlocks
