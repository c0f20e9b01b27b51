"""The data dir's filesystem: every file the store touches goes through one `DataDir`.

A data dir is a local folder or a URI pyarrow serves (`file:///...`). Every write is atomic:
a hidden temp file, then a rename, so a reader sees the old file or the new one, never part
of one, and a killed writer leaves only a temp file, which readers ignore and `prune`
removes.

Start-up speed: importing pyarrow costs about 0.1 s, a third of a screen-prep answered from
its kept table, which only looks at file versions, reads two small files and writes one. So
on a local disk, stat, whole-file reads and atomic writes use os calls (pyarrow's local
filesystem reports the same sizes and nanosecond times: tested), and pyarrow's filesystem
loads when anything else is asked (listing, deleting, Parquet reads).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from upbit_cache.errors import StorageError, UsageError, WriteConflict
from upbit_cache.settings import Settings
from upbit_cache.store.datadir import check_location
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
    """One filesystem and a root: the only way the store reads, writes, lists or deletes."""

    def __init__(self, fs: pafs.FileSystem | None, root: str, uri: str | None = None) -> None:
        """`fs` None: a local disk (pyarrow's local filesystem, made on first use).

        On S3 (`uri` as given, for its endpoint options) every write and delete of a file
        this process read is conditional on the version it read (objects.py).
        """
        self._fs = fs
        self.root = root.rstrip("/") or "/"
        self.is_local = fs is None or _is_local(fs)
        self.conditional = fs is not None and _is_s3(fs)
        self._uri = uri or f"s3://{self.root}"
        self._objects: ObjectClient | None = None
        self._seen: dict[str, str] = {}  # path -> the version read (S3), what a write replaces
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
        """The pyarrow filesystem every operation goes through."""
        if self._fs is None:
            import pyarrow.fs as pafs

            self._fs = pafs.LocalFileSystem()
        return self._fs

    def __repr__(self) -> str:
        return f"DataDir({self.root!r})"

    # Reading

    def stat(self, path: str) -> StoredFile | None:
        """The file at `path`, or None if there is none."""
        return self.stat_many([path])[0]

    def stat_many(self, paths: Iterable[str]) -> list[StoredFile | None]:
        """`stat` of many paths in one call."""
        if self._fs is None:
            return [_local_stat(p) for p in paths]
        import pyarrow.fs as pafs

        infos = self._infos(list(paths))
        return [_stored(i) if i.type == pafs.FileType.File else None for i in infos]

    def is_file(self, path: str, *, for_update: bool = False) -> bool:
        """Whether `path` is a file; `for_update` and absent: a later `write` (on S3) creates
        it only if it is still absent (see `read_for_update`)."""
        found = self.stat(path) is not None
        if for_update and self.conditional and not found:
            self._seen[path] = ABSENT
        return found

    def list_files(self, folder: str, *, recursive: bool = False) -> list[StoredFile]:
        """The files under `folder` (none if it does not exist), in path order."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(folder, recursive=recursive, allow_not_found=True)
        found = self._listing(selector)
        return sorted((_stored(i) for i in found if i.type == pafs.FileType.File), key=_path)

    def list_dirs(self, folder: str) -> list[str]:
        """The names of the folders directly under `folder`, sorted."""
        if self.is_local:  # every store open looks here: no pyarrow for it
            try:
                with os.scandir(folder) as entries:
                    return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as exc:
                raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(folder, allow_not_found=True)
        found = self._listing(selector)
        return sorted(i.base_name for i in found if i.type == pafs.FileType.Directory)

    def read_bytes(self, path: str) -> bytes | None:
        """The whole file, or None if there is none (on S3 in one GET: see `open_input`)."""
        if self.conditional:
            return self.objects.get(path)[0]
        try:
            if self._fs is None:
                with open(path, "rb") as local:
                    return local.read()
            with self.fs.open_input_stream(path) as source:
                return bytes(source.read())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc

    def read_for_update(self, path: str) -> bytes | None:
        """`read_bytes`, and on S3 remember the version read: the next `write` or `delete`
        of `path` by this process happens only over that version (else WriteConflict)."""
        if not self.conditional:
            return self.read_bytes(path)
        data, version = self.objects.get(path)
        self._seen[path] = version
        return data

    @property
    def objects(self) -> ObjectClient:
        if self._objects is None:
            import pyarrow.fs as pafs

            assert isinstance(self.fs, pafs.S3FileSystem)
            self._objects = ObjectClient.for_uri(self._uri, self.fs)
        return self._objects

    def open_input(self, path: str) -> pa.NativeFile:
        """A file opened for random access (Parquet); FileNotFoundError if it is gone.

        On S3 the whole object in one GET: ranged reads of an object that a writer
        replaces meanwhile would mix two versions (a footer of one, pages of the other).
        """
        if not self.conditional:
            return self.fs.open_input_file(path)
        import pyarrow as pa

        data, _version = self.objects.get(path)
        if data is None:
            raise FileNotFoundError(path)
        return pa.BufferReader(data)

    # Writing

    def write(self, path: str, write: Writer) -> StoredFile | None:
        """Create or replace `path` atomically with what `write` puts into the stream.

        The file as written, or None if another process replaced or removed it meanwhile.
        On S3: one PUT, conditional on the version `read_for_update` saw, if it saw one.
        """
        if not self.conditional:
            atomic_write(self._fs, path, write)
            return self.stat(path)
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        write(sink)
        self._seen[path] = self.objects.put(
            path, sink.getvalue().to_pybytes(), self._seen.get(path)
        )
        return self.stat(path)

    def write_bytes(self, path: str, data: bytes) -> StoredFile | None:
        return self.write(path, lambda sink: sink.write(data))

    def create(self, path: str, write: Writer) -> StoredFile | None:
        """Create `path` with what `write` puts into the stream, only if there is no file
        there: the file as created, or None if one was there already (nothing written).

        Atomic like `write`: on a local disk a hidden temp file hard-linked to `path` (link(2)
        fails where a file is), on S3 one PUT with `If-None-Match: *`.
        """
        if self.conditional:
            import pyarrow as pa

            sink = pa.BufferOutputStream()
            write(sink)
            try:
                self.objects.put(path, sink.getvalue().to_pybytes(), ABSENT)
            except WriteConflict:
                return None
            return self.stat(path)
        if not self.is_local:  # no create-if-absent: one writer at a time there (see `lock`)
            if self.stat(path) is not None:
                return None
            atomic_write(self.fs, path, write)
            return self.stat(path)
        return _create_local(path, write)

    def delete(self, path: str) -> bool:
        """Remove a file; False if it was already gone (on S3 never said). On S3, conditional
        as `write` is, and through boto3 always: pyarrow's delete leaves a folder marker
        object where it deleted a folder's last file (data files written once are deleted
        without a version: nothing replaces them)."""
        if self.conditional:
            self.objects.delete(path, self._seen.pop(path, None) or None)
            return True
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc}") from exc
        return True

    def move(self, source: str, target: str) -> None:
        """Put `source` at `target` unless a file is there already, then remove `source`.

        Safe to repeat and to race: a file is never lost (at worst in both places until
        the next call), and one already at `target` is never overwritten. On S3 the copy
        is created only if absent, and the source deleted only in the version copied.
        """
        try:
            if self.is_local:
                os.makedirs(target.rpartition("/")[0], exist_ok=True)
                with contextlib.suppress(FileExistsError):
                    os.link(source, target)  # creates only if absent, atomically
                os.unlink(source)
                return
            if self.conditional:
                data, version = self.objects.get(source)
                if data is None:
                    return  # another process moved it
                with contextlib.suppress(WriteConflict):  # there already: kept as it is
                    self.objects.put(target, data, ABSENT)
                self.objects.delete(source, version)
                return
            if self.stat(target) is None:
                self.fs.create_dir(target.rpartition("/")[0], recursive=True)
                self.fs.copy_file(source, target)
            self.fs.delete_file(source)
        except FileNotFoundError:
            if self.stat(source) is None:
                return  # another process moved it
            raise StorageError(f"cannot move {source} to {target}") from None
        except OSError as exc:
            raise StorageError(f"cannot move {source} to {target}: {exc}") from exc

    def delete_dir_if_empty(self, folder: str) -> None:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(folder, allow_not_found=True)
        if not self._listing(selector):
            with contextlib.suppress(OSError):  # a writer may be filling it again
                self.fs.delete_dir(folder)

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
        object on S3 (it holds across hosts), none elsewhere (one writer at a time).

        `shared`: a reader's lock, which keeps writers out but needs no write on a local
        disk (see FileLock); on S3 it is the writer's lease.
        """
        if self.conditional:
            from upbit_cache.store.lease import ObjectLease

            return ObjectLease(
                self.objects, path, what=what or path, timeout=timeout, on_wait=on_wait
            )
        local = path if self.is_local else None
        return FileLock(local, what=what, timeout=timeout, on_wait=on_wait, shared=shared)

    @property
    def where(self) -> str:
        """The data dir as a user names it: a folder, or `s3://bucket/prefix`."""
        return f"s3://{self.root}" if self.conditional else self.root

    def exists(self) -> bool:
        """Whether the data dir is there: a folder (on S3, a bucket or a prefix holding
        anything)."""
        if self._fs is None:
            return os.path.isdir(self.root)
        import pyarrow.fs as pafs

        return self._infos([self.root])[0].type == pafs.FileType.Directory

    def require(self) -> None:
        """Fail (StorageError, exit 2) unless the data dir exists: reading one that does not
        is a mistake in its name, not an empty store (a fetch creates it; on S3, not its
        bucket). Once found, it is not looked for again."""
        if self._there:
            return
        if not self.exists():
            missing = self._missing_bucket()
            why = (
                f"there is no bucket {missing} (a fetch creates the prefix, not it)"
                if missing is not None
                else "nothing was fetched there (a fetch creates it)"
            )
            raise StorageError(f"no data dir at {self.where}: {why}")
        self._there = True

    def _missing_bucket(self) -> str | None:
        """On S3, the data dir's bucket if it does not exist (a misspelt name, most often)."""
        if not self.conditional:
            return None
        import pyarrow.fs as pafs

        bucket = self.root.split("/", 1)[0]
        try:
            found = self.fs.get_file_info(bucket)
        except OSError:
            return None  # not allowed to look: the plain message
        return bucket if found.type == pafs.FileType.NotFound else None

    def is_a_file(self) -> bool:
        """Whether the data dir itself is a regular file (a usage mistake)."""
        return self.is_file(self.root)

    def ensure_writable(self) -> None:
        """Fail early, with the path in the message, if nothing can be written here."""
        probe = temp_path(f"{self.root}/.write-probe")  # unique: runs may probe at once
        try:
            self.write_bytes(probe, b"ok")
            self.delete(probe)
        except (StorageError, OSError) as exc:
            missing = self._missing_bucket()
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
        probe = temp_path(f"{self.root}/.clock")
        try:
            with self.fs.open_output_stream(probe):
                pass
            found = self.stat(probe)
            self.fs.delete_file(probe)
        except OSError:
            return now_ms()
        return found.mtime_ms if found is not None and found.mtime_ns else now_ms()

    def _infos(self, paths: list[str]) -> list[pafs.FileInfo]:
        try:
            return list(self.fs.get_file_info(paths))
        except OSError as exc:
            raise StorageError(f"cannot look at {paths[0] if paths else self.root}: {exc}") from exc

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


STALE_TEMP_S = 600  # a temp file this old is no write under way but a killed one's leftover


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


def _create_local(final: str, write: Writer) -> StoredFile | None:
    """`DataDir.create` on a local disk: a temp file, linked to `final` only if it is absent."""
    tmp = temp_path(final)
    try:
        os.makedirs(final.rpartition("/")[0] or "/", exist_ok=True)
        with open(tmp, "wb") as local:
            write(local)
            local.flush()
            made = os.fstat(local.fileno())
        try:
            os.link(tmp, final)
        except FileExistsError:
            return None
        return StoredFile(final, made.st_size, made.st_mtime_ns)
    except OSError as exc:
        raise StorageError(f"cannot write {final}: {exc.strerror or exc}") from exc
    finally:
        _discard(None, tmp)


def _discard(fs: pafs.FileSystem | None, path: str) -> None:
    with contextlib.suppress(OSError):
        if fs is None:
            os.unlink(path)
        else:
            fs.delete_file(path)


def _is_local(fs: pafs.FileSystem) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def _is_s3(fs: pafs.FileSystem) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.S3FileSystem)


def _local_path(text: str) -> str:
    return str(Path(text).expanduser().absolute())


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
