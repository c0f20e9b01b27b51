"""The data dir: every file the store touches goes through one `DataDir`.

A data dir is a local folder or a URI pyarrow serves (`file:///...`, `s3://...`). Every write
is atomic: a hidden temp file, then a rename (on S3, one PUT), so a reader sees the old file
or the new one, never part of one, and a killed writer leaves only a temp file, which
readers ignore and `prune` removes. How each kind of storage does it is its backend's
(backends.py).

Start-up speed: importing pyarrow costs about 0.1 s, a third of a screen-prep answered from
its kept table, which only looks at file versions, reads two small files and writes one. So
on a local disk, stat, whole-file reads and atomic writes use os calls (pyarrow's local
filesystem reports the same sizes and nanosecond times: tested), and pyarrow's filesystem
loads when anything else is asked (listing, Parquet reads).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from upbit_cache.errors import StorageError, UsageError
from upbit_cache.settings import Settings
from upbit_cache.store.backends import (
    Backend,
    LocalBackend,
    S3Backend,
    StoredFile,
    Writer,
    atomic_write,
    backend_for,
)
from upbit_cache.store.datadir import check_location
from upbit_cache.store.layout import temp_path
from upbit_cache.store.locks import WriterLock
from upbit_cache.store.objects import ObjectClient

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

__all__ = ["STALE_TEMP_S", "DataDir", "StoredFile", "Writer", "atomic_write", "open_filesystem"]


def open_filesystem(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it for a local path or a URI."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    text = os.fspath(location)
    if "://" not in text:
        return pafs.LocalFileSystem(), _local_path(text)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise UsageError(f"cannot use {text} as a location: {exc}") from exc
    return fs, path


class DataDir:
    """One backend and a root: the only way the store reads, writes, lists or deletes.

    What differs between a local disk, S3 and any other filesystem is the backend's
    (backends.py); this class is the same for all of them.
    """

    def __init__(self, fs: pafs.FileSystem | None, root: str, uri: str | None = None) -> None:
        """`fs` None: a local disk (pyarrow's local filesystem, made on first use).

        On S3 (`uri` as given, for its endpoint options) every write and delete of a file
        this process read is conditional on the version it read (objects.py).
        """
        self.root = root.rstrip("/") or "/"
        self.backend: Backend = backend_for(fs, self.root, uri)
        self._there = False  # `require` found the data dir (it is not looked for again)

    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None) -> DataDir:
        """The data dir at a local path or URI; None: UPBIT_CACHE_DIR or the user data dir.

        A name that cannot be one (empty, not UTF-8, control characters) is a UsageError.
        """
        if location is None:
            location = Settings.from_env().default_data_dir()
        text = check_location(os.fspath(location))
        if "://" not in text:
            found = cls(None, _local_path(text))
        else:
            fs, root = open_filesystem(text)
            if not root.strip("/"):
                raise UsageError(f"cannot use {text} as a location: name a bucket or folder in it")
            found = cls(fs, root, text)
        if found.is_a_file():
            raise StorageError(f"data dir {found.root} is a file, not a directory")
        return found

    @property
    def fs(self) -> pafs.FileSystem:
        """The pyarrow filesystem under the backend (Parquet datasets read through it)."""
        return self.backend.fs

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    @property
    def conditional(self) -> bool:
        """Whether writes replace only the version this process read (S3)."""
        return self.backend.conditional

    @property
    def objects(self) -> ObjectClient:
        """The S3 client of conditional writes (S3 only)."""
        if not isinstance(self.backend, S3Backend):
            raise StorageError(f"{self.where} is not on S3")
        return self.backend.objects

    def __repr__(self) -> str:
        return f"DataDir({self.root!r})"

    # Reading

    def stat(self, path: str) -> StoredFile | None:
        """The file at `path`, or None if there is none."""
        return self.backend.stat_many([path])[0]

    def stat_many(self, paths: Iterable[str]) -> list[StoredFile | None]:
        """`stat` of many paths in one call."""
        return self.backend.stat_many(list(paths))

    def is_file(self, path: str, *, for_update: bool = False) -> bool:
        """Whether `path` is a file; `for_update` and absent: a later `write` (on S3) creates
        it only if it is still absent (see `read_for_update`)."""
        found = self.stat(path) is not None
        if for_update and not found:
            self.backend.expect_absent(path)
        return found

    def list_files(self, folder: str, *, recursive: bool = False) -> list[StoredFile]:
        """The files under `folder` (none if it does not exist), in path order."""
        return self.backend.list_files(folder, recursive)

    def list_dirs(self, folder: str) -> list[str]:
        """The names of the folders directly under `folder`, sorted."""
        return self.backend.list_dirs(folder)

    def read_bytes(self, path: str) -> bytes | None:
        """The whole file, or None if there is none (on S3 in one GET: see `open_input`)."""
        return self.backend.read(path)

    def read_for_update(self, path: str) -> bytes | None:
        """`read_bytes`, and on S3 remember the version read: the next `write` or `delete`
        of `path` by this process happens only over that version (else WriteConflict)."""
        return self.backend.read(path, for_update=True)

    def open_input(self, path: str) -> pa.NativeFile:
        """A file opened for random access (Parquet); FileNotFoundError if it is gone.

        On S3 the whole object in one GET: ranged reads of an object that a writer
        replaces meanwhile would mix two versions (a footer of one, pages of the other).
        """
        return self.backend.open_input(path)

    # Writing

    def write(self, path: str, write: Writer) -> StoredFile | None:
        """Create or replace `path` atomically with what `write` puts into the stream.

        The file as written, or None if another process replaced or removed it meanwhile.
        On S3: one PUT, conditional on the version `read_for_update` saw, if it saw one.
        """
        self.backend.write(path, write)
        return self.stat(path)

    def write_bytes(self, path: str, data: bytes) -> None:
        """`write` of a small file (a record, a kept screen's facts), not looked at after."""
        self.backend.write(path, lambda sink: sink.write(data))

    def create(self, path: str, write: Writer) -> StoredFile | None:
        """Create `path` with what `write` puts into the stream, only if there is no file
        there: the file as written, or None if one was there already (it is left as it is).

        On a local disk a temp file hard-linked to `path` (the link fails if anything is
        there); on S3 a PUT with `If-None-Match: *`; elsewhere a look, then a write, which
        is sound for the one writer such a store takes at a time (backends.OtherBackend).
        """
        if not self.backend.create(path, write):
            return None
        return self.stat(path)

    def delete(self, path: str) -> bool:
        """Remove a file; False if it was already gone (on S3 never said). On S3, conditional
        as `write` is, and through boto3 always: pyarrow's delete leaves a folder marker
        object where it deleted a folder's last file (data files written once are deleted
        without a version: nothing replaces them)."""
        return self.backend.delete(path)

    def move(self, source: str, target: str) -> None:
        """Put `source` at `target` unless a file is there already, then remove `source`.

        Safe to repeat and to race: a file is never lost (at worst in both places until
        the next call), and one already at `target` is never overwritten. On S3 the copy
        is created only if absent, and the source deleted only in the version copied.
        """
        self.backend.move(source, target)

    def delete_dir_if_empty(self, folder: str) -> None:
        self.backend.delete_dir_if_empty(folder)

    def lock(
        self,
        path: str,
        what: str = "",
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        *,
        shared: bool = False,
    ) -> WriterLock:
        """An exclusive writer lock named by `path`: a `flock` on a local disk, a lease
        object on S3 (it holds across hosts), elsewhere one writing process at a time
        (a second is refused: store/claim.py).

        `shared`: a reader's lock, which keeps writers out but needs no write on a local
        disk (see FileLock); on S3 it is the writer's lease.
        """
        return self.backend.lock(path, what or path, timeout, on_wait, shared)

    @property
    def leaves_temps(self) -> bool:
        """Whether a killed write can leave a temp file behind (not on S3: one PUT)."""
        return self.backend.leaves_temps

    @property
    def parallel_reads(self) -> int:
        """Small reads worth running at once here (a remote store's round trips)."""
        return self.backend.parallel_reads

    @property
    def where(self) -> str:
        """The data dir as a user names it: a folder, or `s3://bucket/prefix`."""
        return self.backend.where(self.root)

    def exists(self) -> bool:
        """Whether the data dir is there: a folder (on S3, a bucket or a prefix holding
        anything)."""
        return self.backend.is_dir(self.root)

    def require(self) -> None:
        """Fail (StorageError, exit 2) unless the data dir exists: reading one that does not
        is a mistake in its name, not an empty store (a fetch creates it; on S3, not its
        bucket). Once found, it is not looked for again."""
        if self._there:
            return
        if not self.exists():
            missing = self.backend.missing_bucket(self.root)
            why = (
                f"there is no bucket {missing} (a fetch creates the prefix, not it)"
                if missing is not None
                else "nothing was fetched there (a fetch creates it)"
            )
            raise StorageError(f"no data dir at {self.where}: {why}")
        self._there = True

    def is_a_file(self) -> bool:
        """Whether the data dir itself is a regular file (a usage mistake)."""
        return self.is_file(self.root)

    def ensure_writable(self) -> None:
        """Fail early, with the path in the message, if nothing can be written here (or, on a
        filesystem taking one writer at a time, not now: another run is writing)."""
        self.backend.check_writers()
        probe = temp_path(f"{self.root}/.write-probe")  # unique: runs may probe at once
        try:
            self.write_bytes(probe, b"ok")
            self.delete(probe)
        except (StorageError, OSError) as exc:
            missing = self.backend.missing_bucket(self.root)
            if missing is not None:
                raise StorageError(
                    f"cannot write the data dir {self.where}: there is no bucket {missing}; "
                    "create it first (a fetch creates the prefix, not the bucket)"
                ) from exc
            raise StorageError(f"data dir {self.root} is not writable: {exc}") from exc

    def clock_ms(self) -> int:
        """Now on the data dir's own clock: the modification time a file written now gets.

        File ages (leftover temp files, kept screens nobody uses) are measured against this,
        not against this host's clock, so that a data dir whose clock differs from ours
        (another host's disk, an object store, a test under a shifted clock) ages nothing
        wrongly. Where nothing can be written, this host's clock is the only one there is.
        """
        return self.backend.clock_ms(self.root)


STALE_TEMP_S = 600  # a temp file this old is no write under way but a killed one's leftover


def _local_path(text: str) -> str:
    return str(Path(text).expanduser().absolute())
