"""What a user may give the tool, and when it may be stopped: bad input is one line and exit 2,
a data dir must exist to be read, and SIGTERM is 143 whenever it lands."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import FAST_RATE, NOW, Procs, S3Server, plain, read_until, run_fetch, wait_for
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.locks import FileLock

PROG = Path(sys.executable).parent / "upbit-cache"  # the console entry point itself


def entry_point() -> list[str]:
    return [str(PROG)] if PROG.exists() else [sys.executable, "-m", "upbit_cache"]


# SIGTERM at any moment


def sigterm_caught(pid: int) -> bool | None:
    """Whether process `pid` catches SIGTERM now (its handler is in place); None off Linux."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
    except OSError:
        return None
    return bool(int(fields["SigCgt"], 16) >> (signal.SIGTERM - 1) & 1)


def until(moment: float) -> None:
    """Let time run to `moment` (monotonic): when to signal is what these tests vary."""
    while (left := moment - time.monotonic()) > 0:
        time.sleep(min(left, 0.005))


def check_stopped(proc: subprocess.Popen[str], caught: bool | None, done: str) -> str:
    """A process sent SIGTERM: 143 and said so, never a traceback. Two outcomes are not
    ours to change: killed by the default action before its handler was in place (what a
    shell reports as 143 too), and done (`done` printed) before the signal landed."""
    out, err = proc.communicate(timeout=120)
    err = err or out  # stderr into stdout
    assert "Traceback" not in err, err
    if proc.returncode == -signal.SIGTERM:
        assert not caught, f"killed by SIGTERM although its handler was in place: {err}"
        return "before the handler"
    if proc.returncode == 0 and done in out + err and "stopped" not in err:
        return "done first"
    assert proc.returncode == 143, (proc.returncode, err)
    assert "upbit-cache: stopped (SIGTERM)" in err, err
    return "143"


COMMANDS = {
    # Long enough (a few seconds of pages) that only start-up is raced, not the end.
    "fetch": ["fetch", *[f"KRW-{c}" for c in "BTC ETH XRP SOL DOGE ADA".split()], "--days", "90"],
    "export": ["export", "KRW-BTC", "KRW-ETH", "KRW-XRP", "-t", "1h", "--days", "90"],
    "info": ["info"],
}
DONE = {"fetch": "candles written", "export": "rows", "info": "is empty"}


def start(
    procs: Procs, name: str, sim: SimulatorServer, data_dir: Path, stderr: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    args = [*entry_point(), *COMMANDS[name], "--data-dir", str(data_dir)]
    if name != "info":
        args += ["--api-url", sim.url, "--rate", "20"]
    return procs.popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)


@pytest.mark.slow
def test_sigterm_at_any_moment_of_start_up_is_143(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    outcomes: dict[str, int] = {}
    for step in range(40):  # every 15 ms from 0 to 585 ms, the commands in turn
        name = list(COMMANDS)[step % 3]
        data_dir = tmp_path / f"d{step}"
        data_dir.mkdir()
        began = time.monotonic()
        proc = start(procs, name, sim, data_dir)
        until(began + step * 0.015)
        caught = sigterm_caught(proc.pid)
        proc.send_signal(signal.SIGTERM)
        seen = check_stopped(proc, caught, DONE[name])
        outcomes[seen] = outcomes.get(seen, 0) + 1
    # The handler is in place some 30 ms after exec on an idle machine: most signals find it.
    assert outcomes.get("143", 0) >= 20, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fetch", "export"])
def test_sigterm_after_the_first_output_is_143(
    name: str, sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    # export: the first CSV line on stdout; fetch: the first market's line on stderr
    proc = start(
        procs, name, sim, tmp_path, subprocess.PIPE if name == "export" else subprocess.STDOUT
    )
    read_until(proc, lambda lines: len(lines) >= 1, "the first line")
    proc.send_signal(signal.SIGTERM)
    assert check_stopped(proc, True, "never done") == "143"


@pytest.mark.slow
def test_ctrl_c_is_still_130(sim: SimulatorServer, tmp_path: Path, procs: Procs) -> None:
    proc = start(procs, "export", sim, tmp_path)
    read_until(proc, lambda lines: len(lines) >= 1, "the header")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "upbit-cache: stopped (interrupted)" in err and "Traceback" not in err


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )


def test_sigterm_while_starting_exits_143_at_once() -> None:
    done = run_script("""
        import os, signal
        from upbit_cache.cli import stop
        stop.install()
        os.kill(os.getpid(), signal.SIGTERM)
        print("went on")
    """)
    assert done.returncode == 143 and done.stdout == ""
    assert done.stderr.endswith("upbit-cache: stopped (SIGTERM); what was fetched is kept\n")


def test_sigterm_interrupts_the_work_once_and_the_end_is_143() -> None:
    done = run_script("""
        import os, signal, time
        from upbit_cache.cli import stop
        stop.install()
        try:
            with stop.working():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(60)
        except KeyboardInterrupt:
            print("interrupted")
        os.kill(os.getpid(), signal.SIGTERM)  # finishing: nothing is interrupted
        print("finished")
        os._exit(stop.exit_code(0))
    """)
    assert done.returncode == 143, done.stderr
    assert done.stdout == "interrupted\nfinished\n"
    assert done.stderr.count("stopped (SIGTERM)") == 1 and "Traceback" not in done.stderr


def test_a_second_sigterm_does_not_cut_the_cleanup_short() -> None:
    done = run_script("""
        import os, signal
        from upbit_cache.cli import stop
        stop.install()
        try:
            with stop.working():
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    while True:
                        pass
                finally:
                    os.kill(os.getpid(), signal.SIGTERM)  # during the cleanup
                    print("cleaned up")
        except KeyboardInterrupt:
            pass
        os._exit(stop.exit_code(0))
    """)
    assert done.returncode == 143 and done.stdout == "cleaned up\n", done.stderr


def test_sigterm_after_the_exit_status_is_decided_is_not_seen() -> None:
    done = run_script("""
        import os, signal
        from upbit_cache.cli import stop
        stop.install()
        with stop.working():
            pass
        code = stop.exit_code(0)
        os.kill(os.getpid(), signal.SIGTERM)  # blocked: the run is over
        os._exit(code)
    """)
    assert done.returncode == 0 and done.stderr == ""


def test_version_through_the_entry_point() -> None:
    done = subprocess.run([*entry_point(), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("upbit-cache ")


# Bad input: one line, exit 2, before any work

runner = CliRunner()


def invoke(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> tuple[int, str, str]:
    done = runner.invoke(app, list(args), env=env, input=input)
    return done.exit_code, done.stdout, plain(done.stderr)


def one_line(err: str, starts: str = "upbit-cache: error: ") -> str:
    assert err.count("\n") == 1 and err.startswith(starts), err
    assert "Traceback" not in err
    return err


def api(sim: SimulatorServer) -> list[str]:
    return ["--api-url", sim.url, "--rate", str(FAST_RATE)]


def requests(sim: SimulatorServer) -> int:
    return int(sim.stats()["requests"])


READERS = {
    "info": ["info"],
    "verify": ["verify"],
    "prune": ["prune"],
    "export --no-refresh": ["export", "KRW-BTC", "--days", "1", "--no-refresh"],
    "resample": ["resample", "-t", "4h"],
    "screen-prep --no-refresh": ["screen-prep", "KRW-BTC", "--no-refresh", "-o", "{tmp}/s.csv"],
}


@pytest.mark.parametrize("command", list(READERS))
def test_reading_a_data_dir_that_does_not_exist_is_exit_2(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    args = [a.format(tmp=tmp_path) for a in READERS[command]]
    code, out, err = invoke(*args, "--data-dir", str(missing))
    assert code == 2 and out == ""
    one_line(err)
    assert f"no data dir at {missing}: nothing was fetched there" in err
    assert not missing.exists()


def test_an_empty_data_dir_that_exists_is_read_as_empty(tmp_path: Path) -> None:
    code, out, _ = invoke("info", "--data-dir", str(tmp_path))
    assert code == 0 and out == f"the store at {tmp_path} is empty: nothing fetched yet\n"
    code, out, _ = invoke("verify", "--data-dir", str(tmp_path))
    assert code == 0 and out.startswith("healthy: 0 series")


def test_reading_a_bucket_or_prefix_that_does_not_exist_is_exit_2(s3: S3Server) -> None:
    for where in (s3.new_dir(), "s3://no-such-bucket-upbit-cache/data"):
        for command in ("info", "verify"):
            code, _, err = invoke(command, "--data-dir", where)
            assert code == 2
            one_line(err)
            assert f"no data dir at {where.removesuffix('/')}" in err


@pytest.mark.parametrize("command", [["fetch", "KRW-BTC"], ["info"], ["export", "KRW-BTC"]])
def test_an_empty_data_dir_name_is_refused(
    command: list[str], sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = [*api(sim), "--days", "1"] if command[0] != "info" else []
    for given in (["--data-dir", ""], ["--data-dir", " "]):
        code, _, err = invoke(*command, *extra, *given)
        assert code == 2
        one_line(err)
        assert "the data dir is empty" in err
    code, _, err = invoke("--data-dir", "", *command, *extra)  # before the command too
    assert code == 2 and "the data dir is empty" in one_line(err)
    assert os.listdir(tmp_path) == []  # nothing written where the tool was started
    assert requests(sim) == 0


@pytest.mark.parametrize("name", ["a\nb", "data\x1b[31m", "tab\there", "del\x7f"])
def test_a_data_dir_name_with_control_characters_is_refused(
    name: str, sim: SimulatorServer, tmp_path: Path
) -> None:
    for command in (["fetch", "KRW-BTC", "--days", "1", *api(sim)], ["info"]):
        code, _, err = invoke(*command, "--data-dir", str(tmp_path / name))
        assert code == 2
        one_line(err)
        assert "holds a control character" in err and repr(str(tmp_path / name)) in err
    assert os.listdir(tmp_path) == []
    assert requests(sim) == 0


@pytest.mark.slow
def test_a_data_dir_name_that_is_not_utf8_is_one_line(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    bad = os.fsencode(tmp_path) + b"/caf\xe9"  # Latin-1, as an old script might write it
    command = [os.fsencode(a) for a in entry_point()]
    runs = [
        [*command, b"fetch", b"KRW-BTC", b"--days", b"1", b"--api-url", sim.url.encode()],
        [*command, b"info"],
        [*command, b"export", b"KRW-BTC", b"--days", b"1", b"--no-refresh"],
    ]
    for args in runs:
        for how in ("option", "environment"):
            env = os.environb.copy()
            if how == "option":
                args = [*args, b"--data-dir", bad]
            else:
                env[b"UPBIT_CACHE_DIR"] = bad
            proc = procs.popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = proc.communicate(timeout=120)
            text = plain(err.decode())
            assert proc.returncode == 2, text
            one_line(text)
            assert f"the data dir '{tmp_path}/caf\\xe9' is not UTF-8" in text
    assert os.listdir(tmp_path) == []
    assert requests(sim) == 0


def test_markets_files_that_are_not_utf8_text_are_one_line(tmp_path: Path) -> None:
    listing = tmp_path / "markets.txt"
    data = ["--days", "1", "--no-refresh", "--data-dir", str(tmp_path)]
    for content, said in [
        (b"KRW-BTC\n\xff\xfeKRW-ETH\n", "is not UTF-8 text (byte 0xff at offset 8)"),
        ("KRW-BTC\nKRW-ÉTH\n".encode("latin-1"), "is not UTF-8 text (byte 0xc9 at offset"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is not text (it holds NUL bytes)"),
        (bytes(range(256)) * 4, "is not text (it holds NUL bytes)"),
        (b"", "names no market"),
    ]:
        listing.write_bytes(content)
        code, _, err = invoke("export", "--markets-file", str(listing), *data)
        assert code == 2, err
        assert f"the markets file {listing} {said}" in one_line(err)
    code, _, err = invoke("export", "--markets-file", "-", *data, input=b"\xff\n")
    assert code == 2 and "the markets file stdin is not UTF-8" in one_line(err)
    code, _, err = invoke("export", "--markets-file", str(tmp_path / "none.txt"), *data)
    assert code == 2 and "No such file or directory" in one_line(err)


def test_a_markets_file_with_a_byte_order_mark_is_read(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    listing = tmp_path / "markets.txt"
    listing.write_bytes("\ufeffKRW-BTC\r\nKRW-ETH # comment\r\n".encode())
    out = tmp_path / "out.csv"
    args = ["export", "--markets-file", str(listing), "-t", "1d", "--days", "3", "-o", str(out)]
    code, _, err = invoke(*args, *api(sim), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err
    rows = out.read_text().splitlines()
    assert {r.split(",")[0] for r in rows[1:]} == {"KRW-BTC", "KRW-ETH"}


@pytest.mark.parametrize(
    "given", [["-t", "1h,,4h"], ["-t", "1h,"], ["-t", ",1h"], ["-t", "1h", "-t", ""]]
)
def test_empty_timeframe_items_are_refused(
    given: list[str], sim: SimulatorServer, tmp_path: Path
) -> None:
    for command in (["fetch", "KRW-BTC", "--days", "1"], ["screen-prep", "KRW-BTC"]):
        code, _, err = invoke(*command, *given, *api(sim), "--data-dir", str(tmp_path))
        assert code == 2
        assert "empty timeframe in " in one_line(err)
    assert requests(sim) == 0


@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("--api-url", "notaurl"),
        ("--api-url", "ftp://x"),
        ("--api-url", ""),
        ("--api-url", "http://"),
        ("--api-url", "http://host:port"),
        ("--api-url", "http://exa mple.com"),
        ("--ws-url", "http://127.0.0.1:1"),
    ],
)
def test_an_api_url_that_is_no_url_is_refused_before_any_request(
    option: str, url: str, tmp_path: Path
) -> None:
    command = ["live", "KRW-BTC"] if option == "--ws-url" else ["fetch", "KRW-BTC", "--days", "1"]
    began = time.monotonic()
    code, _, err = invoke(*command, option, url, "--data-dir", str(tmp_path))
    assert code == 2
    assert f"{option} must be a URL such as " in one_line(err) and repr(url) in err
    assert time.monotonic() - began < 5  # no retries (they took 6-9 s)
    assert os.listdir(tmp_path) == []


def test_a_bad_api_url_in_the_environment_is_refused_too(tmp_path: Path) -> None:
    code, _, err = invoke(
        "fetch", "KRW-BTC", "--data-dir", str(tmp_path), env={"UPBIT_API_URL": "api.upbit.com"}
    )
    assert code == 2 and "'api.upbit.com'" in one_line(err)


@pytest.mark.parametrize(
    "window",
    [
        ["--since", "0001-01-01"],
        ["--since", "2016-12-31T23:00"],
        ["--since", "-7d", "--until", "2000-01-01"],
        ["--timerange", "00010101-20250101"],
        ["--timerange", "-20161231"],
    ],
)
def test_times_before_upbit_opened_are_refused_up_front(
    window: list[str], sim: SimulatorServer, tmp_path: Path
) -> None:
    for command in (["fetch", "KRW-BTC"], ["export", "KRW-BTC", "-o", str(tmp_path / "o.csv")]):
        code, _, err = invoke(*command, *window, *api(sim), "--data-dir", str(tmp_path / "d"))
        assert code == 2
        assert "is before Upbit opened: give a time from 2017-01-01 on" in one_line(err)
    assert requests(sim) == 0 and not (tmp_path / "d").exists()


def test_the_earliest_start_and_an_open_start_are_accepted(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    for window in (
        ["--since", "2017-01-01", "--until", "2017-01-08"],
        ["--timerange", "-20170108"],
    ):
        code, _, err = invoke(
            "fetch", "KRW-BTC", "-t", "1d", *window, *api(sim), "--data-dir", str(tmp_path)
        )
        assert code == 0, err


@pytest.mark.parametrize("kind", ["missing", "a file", "unwritable"])
def test_an_unusable_runtime_dir_is_named_once_before_any_work(
    kind: str, sim: SimulatorServer, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    code, _, err = invoke("fetch", "KRW-BTC", "KRW-ETH", "--days", "2", *api(sim), *data)
    assert code == 0, err  # everything stored: the next run has nothing to fetch
    (tmp_path / "file").write_bytes(b"")
    runtime = {
        "missing": "/proc/upbit-cache-runtime",  # not even root can create it
        "a file": str(tmp_path / "file"),
        "unwritable": "/proc/self",
    }[kind]
    env = {"UPBIT_CACHE_RUNTIME_DIR": runtime}
    sim.reset_stats()
    for days in ("2", "5"):  # nothing to fetch, then something
        code, _, err = invoke(
            "fetch", "KRW-BTC", "KRW-ETH", "--days", days, *api(sim), *data, env=env
        )
        assert code == 2
        assert f"cannot use the runtime dir {runtime} (UPBIT_CACHE_RUNTIME_DIR)" in one_line(err)
    code, _, err = invoke("export", "KRW-BTC", "--days", "5", *api(sim), *data, env=env)
    assert code == 2 and "cannot use the runtime dir" in one_line(err)
    assert requests(sim) == 0


@pytest.mark.parametrize("command", ["export", "screen-prep"])
def test_output_into_a_folder_that_does_not_exist_is_refused(
    command: str, sim: SimulatorServer, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data"), *api(sim)]
    target = tmp_path / "nonexistent" / "dir" / "out.csv"
    code, _, err = invoke(command, "KRW-BTC", "--days", "1", "-o", str(target), *data)
    assert code == 2
    assert f"cannot write {target}: there is no folder {target.parent}" in one_line(err)
    assert not (tmp_path / "nonexistent").exists() and requests(sim) == 0
    code, _, err = invoke(command, "KRW-BTC", "--days", "1", "-o", str(tmp_path), *data)
    assert code == 2 and "it is a folder; name a file in it" in one_line(err)
    assert requests(sim) == 0


# A store this process may only read


def read_only(path: Path) -> None:
    for folder, _, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o555)


def writable(path: Path) -> None:
    for folder, _, _ in os.walk(path):
        os.chmod(folder, 0o755)


def as_a_reader() -> list[str]:
    """A prefix that runs a command without the right to write what it may only read: root
    bypasses file modes, so root's commands run without that capability."""
    if os.geteuid() != 0:
        return []
    found = shutil.which("setpriv")
    if found is None:
        pytest.skip("root without setpriv cannot be made to respect file modes")
    return [found, "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.slow
@pytest.mark.parametrize("locks", ["with its lock files", "copied without them"])
def test_verify_and_info_work_on_a_read_only_store(
    locks: str, sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    store = tmp_path / "store"
    run_fetch(sim.url, store, ["KRW-BTC", "KRW-ETH"], "1h", days=3)
    if locks == "copied without them":
        shutil.rmtree(store / "locks")
    before = sorted(p for p in store.rglob("*"))
    read_only(store)
    try:
        for command in (["verify"], ["info"], ["verify", "-t", "1h", "KRW-BTC", "-v"]):
            args = [*as_a_reader(), *entry_point(), *command, "--data-dir", str(store)]
            proc = procs.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
        assert out.startswith(" 1h KRW-BTC: 1 file, 72 rows, 0 problems")
        args = [*as_a_reader(), "touch", str(store / "probe")]
        assert subprocess.run(args, capture_output=True).returncode != 0  # truly read-only
    finally:
        writable(store)
    assert sorted(p for p in store.rglob("*")) == before  # no lock file, no probe left


def test_verify_waits_for_a_writer_but_not_for_another_reader(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=2)
    lock_file = tmp_path / "locks" / "1h" / "KRW-BTC.lock"
    data = ["--data-dir", str(tmp_path), "--lock-timeout", "0.3"]

    async def holding(shared: bool) -> tuple[int, str, str]:
        async with FileLock(str(lock_file), shared=shared):
            return await asyncio.to_thread(invoke, "verify", *data)

    code, _, err = asyncio.run(holding(shared=False))  # a fetch writing this series
    assert code == 2 and "1h KRW-BTC: another upbit-cache run still holds its lock" in err
    code, out, err = asyncio.run(holding(shared=True))  # another verify
    assert code == 0 and out.startswith("healthy: 1 series"), err
    code, _, err = asyncio.run(
        asyncio.to_thread(invoke, "verify", "--repair", *data)  # a writer: exclusive
    )
    assert code == 0, err


# An --out that a kill -9 cut short


@pytest.mark.slow
def test_the_temp_file_a_killed_export_left_goes_with_the_next_run(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    data = tmp_path / "data"
    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
    stored = run_fetch(sim.url, data, markets, "1m", days=10).candles
    out = tmp_path / "out.csv"
    args = [*entry_point(), "export", *markets, "-t", "1m", "--no-refresh"]
    args += ["--since", "2026-11-10", "--until", NOW]  # the simulator's days
    args += ["-o", str(out), "--data-dir", str(data)]

    def partial() -> list[Path]:
        return list(tmp_path.glob(".out.csv.*.tmp"))

    for _ in range(3):  # a kill while the export writes its temp file (once it is too late)
        victim = procs.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        [left] = wait_for(partial, "the export's temp file", running=[victim], interval=0.002)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=120)
        if left.exists():
            break
        out.unlink()
    assert left.exists() and not out.exists()
    writing = tmp_path / ".out.csv.0123456789abcdef.tmp"  # another run's, writing now
    writing.write_bytes(b"half")
    held = os.open(writing, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        again = procs.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, err = again.communicate(timeout=120)
    finally:
        os.close(held)
    assert again.returncode == 0, err
    assert not left.exists() and writing.exists()  # the killed run's went; the live one stays
    assert out.read_text().count("\n") == stored + 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
