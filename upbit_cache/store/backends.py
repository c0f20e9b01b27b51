"""Where a data dir's files live: one class per kind of storage, behind one protocol.

- `LocalBackend`: a local disk. os calls wherever they answer (stat, whole-file reads, atomic
  writes, links: a screen-prep answered from its kept table loads no pyarrow), pyarrow's
  local filesystem for the rest; writer locks are `flock`s (store/locks.py), which hold for
  every process of this host.
- `S3Backend`: `s3://`. pyarrow lists and stats; reads, writes and deletes go through boto3
  with S3's preconditions (objects.py), so every write replaces only the version this
  process read; the writer lock is a lease object (lease.py) that holds across hosts.
- `OtherBackend`: any other filesystem pyarrow serves (`mock://`, `gs://`, `hdfs://`, a
  `PyFileSystem`). It has neither locks nor conditional writes, so it takes one writer at a
  time: its writer locks hold inside this process, and a writer claim in the data dir
  refuses a second writing process with a StorageError instead of letting it interleave
  (locks.py: `WriterClaim`).

`DataDir` (files.py) holds one of them and is what the store calls.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from upbit_cache.errors import StorageError, WriteConflict
from upbit_cache.store.claim import InProcessLock, WriterClaim
from upbit_cache.store.layout import TEMP_SUFFIX, temp_path
from upbit_cache.store.locks import FileLock, WriterLock
from upbit_cache.store.objects import ABSENT, ObjectClient
from upbit_cache.times import now_ms

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

Writer = Callable[["IO[bytes] | pa.NativeFile"], object]


@dataclass(frozen=True)
class StoredFile:
    """One file as listed: where it is, its size, and when it was last written."""

    path: str
    bytes: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def version(self) -> tuple[int, int]:
        """(size, mtime): changes whenever the file is replaced."""
        return self.bytes, self.mtime_ns

    @property
    def mtime_ms(self) -> int:
        """Modification time in epoch ms, on the data dir's clock (see `DataDir.clock_ms`)."""
        return self.mtime_ns // 1_000_000

    @property
    def is_temp(self) -> bool:
        return self.name.startswith(".") and self.name.endswith(TEMP_SUFFIX)


class Backend(Protocol):
    """What the store needs of a kind of storage. Paths are absolute inside it."""

    kind: str  # "local disk", "s3", or pyarrow's name of the filesystem (for messages)
    conditional: bool  # writes and deletes replace only the version read (S3)
    leaves_temps: bool  # a write goes through a temp file a killed writer may leave behind
    parallel_reads: int  # small reads worth running at once (remote stores: round trips)

    @property
    def fs(self) -> pafs.FileSystem: ...
    def stat_many(self, paths: list[str]) -> list[StoredFile | None]: ...
    def list_files(self, folder: str, recursive: bool) -> list[StoredFile]: ...
    def list_dirs(self, folder: str) -> list[str]: ...
    def read(self, path: str, *, for_update: bool = False) -> bytes | None: ...
    def expect_absent(self, path: str) -> None: ...
    def open_input(self, path: str) -> pa.NativeFile: ...
    def write(self, path: str, write: Writer) -> None: ...
    def create(self, path: str, write: Writer) -> bool: ...
    def delete(self, path: str) -> bool: ...
    def delete_dir_if_empty(self, folder: str) -> None: ...
    def move(self, source: str, target: str) -> None: ...
    def lock(
        self,
        path: str,
        what: str,
        timeout: float | None,
        on_wait: Callable[[str], None] | None,
        shared: bool,
    ) -> WriterLock: ...
    def is_dir(self, path: str) -> bool: ...
    def where(self, root: str) -> str: ...
    def check_writers(self) -> None: ...
    def missing_bucket(self, root: str) -> str | None: ...
    def clock_ms(self, root: str) -> int: ...


def backend_for(fs: pafs.FileSystem | None, root: str, uri: str | None) -> Backend:
    """The backend of a filesystem: None is the local disk (pyarrow's made on first use)."""
    if fs is None:
        return LocalBackend()
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        return LocalBackend(fs)
    if isinstance(fs, pafs.S3FileSystem):
        return S3Backend(fs, uri or f"s3://{root}")
    return OtherBackend(fs, root)


class _ArrowBackend:
    """Every operation through one pyarrow filesystem: what any backend can fall back on."""

    kind = "pyarrow"
    conditional = False
    leaves_temps = True
    parallel_reads = 8

    def __init__(self, fs: pafs.FileSystem | None) -> None:
        self._fs = fs

    @property
    def fs(self) -> pafs.FileSystem:
        assert self._fs is not None
        return self._fs

    def stat_many(self, paths: list[str]) -> list[StoredFile | None]:
        import pyarrow.fs as pafs

        infos = self._infos(paths)
        return [_stored(i) if i.type == pafs.FileType.File else None for i in infos]

    def list_files(self, folder: str, recursive: bool) -> list[StoredFile]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(folder, recursive=recursive, allow_not_found=True)
        found = self._listing(selector)
        return sorted((_stored(i) for i in found if i.type == pafs.FileType.File), key=_path)

    def list_dirs(self, folder: str) -> list[str]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(folder, allow_not_found=True)
        found = self._listing(selector)
        return sorted(i.base_name for i in found if i.type == pafs.FileType.Directory)

    def read(self, path: str, *, for_update: bool = False) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as source:
                return bytes(source.read())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc

    def expect_absent(self, path: str) -> None:
        pass  # only a conditional store remembers what a write must find

    def open_input(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def write(self, path: str, write: Writer) -> None:
        atomic_write(self.fs, path, write)

    def create(self, path: str, write: Writer) -> bool:
        # No way to create only if absent here: look, then write. Sound for one writer at a
        # time, which is all such a store takes (see OtherBackend).
        if self.stat_many([path])[0] is not None:
            return False
        self.write(path, write)
        return True

    def delete(self, path: str) -> bool:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc}") from exc
        return True

    def delete_dir_if_empty(self, folder: str) -> None:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(folder, allow_not_found=True)
        if not self._listing(selector):
            with contextlib.suppress(OSError):  # a writer may be filling it again
                self.fs.delete_dir(folder)

    def move(self, source: str, target: str) -> None:
        try:
            if self.stat_many([target])[0] is None:
                self.fs.create_dir(target.rpartition("/")[0], recursive=True)
                self.fs.copy_file(source, target)
            self.fs.delete_file(source)
        except FileNotFoundError:
            if self.stat_many([source])[0] is None:
                return  # another process moved it
            raise StorageError(f"cannot move {source} to {target}") from None
        except OSError as exc:
            raise StorageError(f"cannot move {source} to {target}: {exc}") from exc

    def is_dir(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return self._infos([path])[0].type == pafs.FileType.Directory

    def where(self, root: str) -> str:
        """The data dir at `root` as a user names it."""
        return root

    def check_writers(self) -> None:
        """Raise StorageError if this process cannot write here now for another's sake."""

    def missing_bucket(self, root: str) -> str | None:
        return None

    def clock_ms(self, root: str) -> int:
        probe = temp_path(f"{root}/.clock")
        try:
            with self.fs.open_output_stream(probe):
                pass
            found = self.stat_many([probe])[0]
            self.fs.delete_file(probe)
        except OSError:
            return now_ms()
        return found.mtime_ms if found is not None and found.mtime_ns else now_ms()

    def _infos(self, paths: list[str]) -> list[pafs.FileInfo]:
        try:
            return list(self.fs.get_file_info(paths))
        except OSError as exc:
            raise StorageError(f"cannot look at {paths[0] if paths else '?'}: {exc}") from exc

    def _listing(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        import pyarrow as pa

        from upbit_cache import retry  # tenacity: not for the light paths that never list

        try:
            # pyarrow checks a folder it could not open again before raising
            # FileNotFoundError: one that another writer created meanwhile (or an entry
            # removed mid-walk) is a race, listed again.
            for attempt in retry.walk_race():
                with attempt:
                    return list(self.fs.get_file_info(selector))
        except NotADirectoryError as exc:
            raise StorageError(f"{selector.base_dir} is a file, not a directory") from exc
        except (OSError, pa.ArrowException) as exc:  # ArrowInvalid: a path pyarrow refuses
            raise StorageError(f"cannot list {selector.base_dir}: {exc}") from exc
        raise AssertionError("unreachable")


class LocalBackend(_ArrowBackend):
    """A local disk: os calls where they answer, `flock`s for writer locks."""

    kind = "local disk"
    parallel_reads = 1  # a local read costs microseconds: threads would only add to it

    def __init__(self, fs: pafs.LocalFileSystem | None = None) -> None:
        super().__init__(fs)

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:  # made on first use: most light commands never need it
            import pyarrow.fs as pafs

            self._fs = pafs.LocalFileSystem()
        return self._fs

    def stat_many(self, paths: list[str]) -> list[StoredFile | None]:
        return [_local_stat(p) for p in paths]

    def list_dirs(self, folder: str) -> list[str]:
        try:  # every store open looks here: no pyarrow for it
            with os.scandir(folder) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc

    def read(self, path: str, *, for_update: bool = False) -> bytes | None:
        try:
            with open(path, "rb") as local:
                return local.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def write(self, path: str, write: Writer) -> None:
        atomic_write(None, path, write)

    def create(self, path: str, write: Writer) -> bool:
        """A temp file, then a hard link to `path`, which fails if anything is there: two
        processes creating at once make one file, and the loser learns it."""
        tmp = temp_path(path)
        try:
            os.makedirs(path.rpartition("/")[0] or "/", exist_ok=True)
            with open(tmp, "wb") as local:
                write(local)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            _discard(None, tmp)

    def delete(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from exc
        return True

    def delete_dir_if_empty(self, folder: str) -> None:
        with contextlib.suppress(OSError):  # not empty (a writer may be filling it), or gone
            os.rmdir(folder)

    def move(self, source: str, target: str) -> None:
        try:
            os.makedirs(target.rpartition("/")[0], exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(source, target)  # creates only if absent, atomically
            os.unlink(source)
        except FileNotFoundError:
            if _local_stat(source) is None:
                return  # another process moved it
            raise StorageError(f"cannot move {source} to {target}") from None
        except OSError as exc:
            raise StorageError(f"cannot move {source} to {target}: {exc.strerror}") from exc

    def lock(
        self,
        path: str,
        what: str,
        timeout: float | None,
        on_wait: Callable[[str], None] | None,
        shared: bool,
    ) -> WriterLock:
        return FileLock(path, what=what, timeout=timeout, on_wait=on_wait, shared=shared)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)


class S3Backend(_ArrowBackend):
    """`s3://`: conditional writes through boto3, a lease object for the writer lock.

    Every file this process read for update (or found absent for update) is written and
    deleted only over that version: `_seen` remembers it (path -> ETag, ABSENT: none).
    """

    kind = "s3"
    conditional = True
    leaves_temps = False  # a write is one PUT: there is never a temp file
    parallel_reads = 16

    def __init__(self, fs: pafs.S3FileSystem, uri: str) -> None:
        super().__init__(fs)
        self._uri = uri
        self._objects: ObjectClient | None = None
        self._seen: dict[str, str] = {}  # path -> the version read: what a write replaces

    @property
    def objects(self) -> ObjectClient:
        if self._objects is None:
            import pyarrow.fs as pafs

            assert isinstance(self.fs, pafs.S3FileSystem)
            self._objects = ObjectClient.for_uri(self._uri, self.fs)
        return self._objects

    def read(self, path: str, *, for_update: bool = False) -> bytes | None:
        """In one GET (see `open_input`); `for_update`: the next write or delete of `path` by
        this process happens only over the version read (else WriteConflict)."""
        data, version = self.objects.get(path)
        if for_update:
            self._seen[path] = version
        return data

    def expect_absent(self, path: str) -> None:
        self._seen[path] = ABSENT

    def open_input(self, path: str) -> pa.NativeFile:
        """The whole object in one GET: ranged reads of an object that a writer replaces
        meanwhile would mix two versions (a footer of one, pages of the other)."""
        import pyarrow as pa

        data, _version = self.objects.get(path)
        if data is None:
            raise FileNotFoundError(path)
        return pa.BufferReader(data)

    def write(self, path: str, write: Writer) -> None:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        write(sink)
        data = sink.getvalue().to_pybytes()
        try:
            self._seen[path] = self.objects.put(path, data, self._seen.get(path))
        except WriteConflict:
            self._seen.pop(path, None)  # the retry reads the new version
            raise

    def create(self, path: str, write: Writer) -> bool:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        write(sink)
        try:
            self._seen[path] = self.objects.put(path, sink.getvalue().to_pybytes(), ABSENT)
        except WriteConflict:
            return False
        return True

    def delete(self, path: str) -> bool:
        # Through boto3 always: pyarrow's delete leaves a folder marker object where it
        # deleted a folder's last file. Conditional on the version read, if one was.
        self.objects.delete(path, self._seen.pop(path, None) or None)
        return True

    def move(self, source: str, target: str) -> None:
        """The copy is created only if absent, the source deleted only in the version
        copied: safe to repeat and to race."""
        data, version = self.objects.get(source)
        if data is None:
            return  # another process moved it
        with contextlib.suppress(WriteConflict):  # there already: kept as it is
            self.objects.put(target, data, ABSENT)
        self.objects.delete(source, version)

    def lock(
        self,
        path: str,
        what: str,
        timeout: float | None,
        on_wait: Callable[[str], None] | None,
        shared: bool,
    ) -> WriterLock:
        from upbit_cache.store.lease import ObjectLease  # a reader's lock too: the lease

        return ObjectLease(self.objects, path, what=what, timeout=timeout, on_wait=on_wait)

    def where(self, root: str) -> str:
        return f"s3://{root}"

    def missing_bucket(self, root: str) -> str | None:
        """The data dir's bucket if it does not exist (a misspelt name, most often)."""
        import pyarrow.fs as pafs

        bucket = root.split("/", 1)[0]
        try:
            found = self.fs.get_file_info(bucket)
        except OSError:
            return None  # not allowed to look: the plain message
        return bucket if found.type == pafs.FileType.NotFound else None


class OtherBackend(_ArrowBackend):
    """Any other pyarrow filesystem: one writer at a time.

    It offers no lock and no conditional write, so two processes writing one series would
    lose rows. Writer locks hold between the jobs of this process (`InProcessLock`), and the
    first one taken makes this process the data dir's writer (`WriterClaim`, a file under
    `locks/`): a second process asking for a writer lock meanwhile gets a StorageError
    saying so, and nothing is written. Readers need no lock, as everywhere.
    """

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        super().__init__(fs)
        self.kind = f"{fs.type_name.removeprefix('py::')}://"  # gcs://, hdfs://, mock://
        self._claim = WriterClaim(self, f"{root}/locks/writer.json", self.kind)

    def check_writers(self) -> None:
        self._claim.check("write")  # before a fetch asks anything: one line, exit 2

    def lock(
        self,
        path: str,
        what: str,
        timeout: float | None,
        on_wait: Callable[[str], None] | None,
        shared: bool,
    ) -> WriterLock:
        return InProcessLock(
            path, self._claim, what=what, timeout=timeout, on_wait=on_wait, shared=shared
        )


def atomic_write(fs: pafs.FileSystem | None, final: str, write: Writer) -> None:
    """Create or replace `final` so that a reader sees the old file or the new one, never part.

    A hidden temp file beside it, then a rename: on a local disk (`fs` None, through os)
    rename(2) replaces the target in one step. A SIGKILL before it leaves only the temp file,
    which readers ignore and prune removes; any failure removes it at once.
    """
    tmp = temp_path(final)
    try:
        if fs is None:
            os.makedirs(final.rpartition("/")[0] or "/", exist_ok=True)
            with open(tmp, "wb") as local:
                write(local)
            os.replace(tmp, final)
        else:
            fs.create_dir(final.rpartition("/")[0], recursive=True)
            with fs.open_output_stream(tmp) as sink:
                write(sink)
            fs.move(tmp, final)
    except OSError as exc:
        _discard(fs, tmp)
        raise StorageError(f"cannot write {final}: {exc.strerror or exc}") from exc
    except BaseException:
        _discard(fs, tmp)
        raise


def _discard(fs: pafs.FileSystem | None, path: str) -> None:
    with contextlib.suppress(OSError):
        if fs is None:
            os.unlink(path)
        else:
            fs.delete_file(path)


def _local_stat(path: str) -> StoredFile | None:
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"cannot look at {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(found.st_mode):
        return None
    return StoredFile(path, found.st_size, found.st_mtime_ns)


def _stored(info: pafs.FileInfo) -> StoredFile:
    return StoredFile(info.path, info.size or 0, info.mtime_ns or 0)


def _path(found: StoredFile) -> str:
    return found.path
