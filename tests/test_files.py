"""DataDir, the one filesystem object: local paths and file:// URIs alike, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from conftest import elsewhere

from upbit_cache.errors import UsageError
from upbit_cache.output.destination import write_out
from upbit_cache.store.files import DataDir


def both(tmp_path: Path) -> list[DataDir]:
    """The same folder as a local path (os calls where they are faster) and through pyarrow
    alone (a PyFileSystem over its local filesystem: to the store, another filesystem)."""
    return [DataDir.open(tmp_path), elsewhere(tmp_path)]


def test_local_os_calls_see_what_pyarrow_sees(tmp_path: Path) -> None:
    local, arrow = both(tmp_path)
    local.write_bytes(f"{tmp_path}/a/b.json", b"{}")
    (tmp_path / "a" / "folder").mkdir()
    names = [f"{tmp_path}/a/b.json", f"{tmp_path}/a/none", f"{tmp_path}/a/folder", f"{tmp_path}/a"]
    assert local.stat_many(names) == arrow.stat_many(names)  # sizes and nanosecond times
    assert local.stat_many(names)[0] is not None and local.stat_many(names)[1:] == [None] * 3
    assert local.list_files(f"{tmp_path}/a") == arrow.list_files(f"{tmp_path}/a")
    for files in both(tmp_path):
        assert files.read_bytes(f"{tmp_path}/a/b.json") == b"{}"
        assert files.read_bytes(f"{tmp_path}/a/none") is None
        assert files.read_bytes(f"{tmp_path}/a/b.json/under-a-file") is None


def test_a_file_uri_is_the_same_folder(tmp_path: Path) -> None:
    uri = DataDir.open(f"file://{tmp_path}")
    assert uri.root == str(tmp_path) and uri.is_local
    uri.write_bytes(f"{tmp_path}/x.json", b"1")
    assert (tmp_path / "x.json").read_bytes() == b"1"


def test_a_location_pyarrow_cannot_serve_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot use nope://x as a location"):
        DataDir.open("nope://x")


@pytest.mark.parametrize("files", ["local", "arrow"])
def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, files: str) -> None:
    target = DataDir.open(tmp_path) if files == "local" else both(tmp_path)[1]
    path = f"{tmp_path}/t.txt"
    target.write_bytes(path, b"old")

    def half_then_fail(sink: object) -> None:
        sink.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        target.write(path, half_then_fail)
    assert (tmp_path / "t.txt").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["t.txt"]


def test_write_out_to_a_folder_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UsageError, match="cannot write"):
        write_out(str(tmp_path / "file" / "out.csv"), lambda sink: sink.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_the_data_dirs_clock_is_the_time_a_new_file_gets(tmp_path: Path) -> None:
    files = DataDir.open(tmp_path)
    before = os.stat(tmp_path).st_mtime_ns // 1_000_000
    now = files.clock_ms()
    (tmp_path / "after").write_bytes(b"")
    after = os.stat(tmp_path / "after").st_mtime_ns // 1_000_000
    assert before - 1000 <= now <= after
    assert os.listdir(tmp_path) == ["after"]  # the probe is gone


class _FolderAppearsWhileListed(pafs.FileSystemHandler):
    """The local disk, where a folder another writer makes appears mid-listing (once)."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()
        self.raced = False

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        if not self.raced:  # pyarrow's own check then finds the folder there and raises
            self.raced = True
            os.makedirs(selector.base_dir)
            raise FileNotFoundError(2, f"Cannot list directory '{selector.base_dir}'")
        return self.local.get_file_info(selector)

    def get_type_name(self) -> str:
        return "raced"

    def equals(self, other: object) -> bool:
        return False

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.local.get_file_info(paths)

    # Not used by a listing; here because pyarrow's handler declares them.
    def create_dir(self, path: str, recursive: bool) -> None: ...
    def delete_dir(self, path: str) -> None: ...
    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None: ...
    def delete_root_dir_contents(self) -> None: ...
    def delete_file(self, path: str) -> None: ...
    def move(self, src: str, dest: str) -> None: ...
    def copy_file(self, src: str, dest: str) -> None: ...
    def open_input_stream(self, path: str) -> None: ...
    def open_input_file(self, path: str) -> None: ...
    def open_output_stream(self, path: str, metadata: object) -> None: ...
    def open_append_stream(self, path: str, metadata: object) -> None: ...


def test_a_folder_made_by_another_writer_while_listed_is_listed(tmp_path: Path) -> None:
    handler = _FolderAppearsWhileListed()
    files = DataDir(pafs.PyFileSystem(handler), str(tmp_path))
    assert files.list_files(f"{tmp_path}/fetched/1h") == []
    assert handler.raced
