"""Conditional writes on S3: what lets many writers on many hosts share one data dir.

pyarrow's S3 filesystem reads, lists and deletes, but cannot make a write conditional, so
the writes go through boto3 with S3's preconditions: `If-None-Match: *` (create only if
absent) and `If-Match: <ETag>` (replace only the version this process read), on PUT and
DELETE alike. A writer that lost a race gets `WriteConflict` and merges again from the new
version; no writer ever replaces a version it has not seen, so no row is lost.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from upbit_cache.errors import StorageError, UsageError, WriteConflict

if TYPE_CHECKING:
    import pyarrow.fs as pafs

ABSENT = ""  # the version of a file that is not there: write it only if still absent


class ObjectClient:
    """PUT, GET and DELETE of whole objects with preconditions, for one S3 endpoint."""

    def __init__(self, endpoint: str | None, region: str | None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise UsageError(
                "an s3:// data dir needs boto3 for safe concurrent writes: "
                "pip install 'upbit-cache[s3]'"
            ) from exc
        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        self._client: Any = boto3.client(
            "s3", endpoint_url=endpoint, region_name=region, config=config
        )

    @classmethod
    def for_uri(cls, uri: str, fs: pafs.S3FileSystem) -> ObjectClient:
        """The client of the endpoint pyarrow uses for `uri` (query options or AWS_* env)."""
        query = {k: v[-1] for k, v in parse_qs(urlsplit(uri).query).items()}
        endpoint = query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint is not None and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        return cls(endpoint, query.get("region") or fs.region or None)

    def get(self, path: str) -> tuple[bytes | None, str]:
        """The object's bytes and version (ETag); (None, ABSENT) if there is none."""
        bucket, key = _split(path)
        try:
            answer = self._client.get_object(Bucket=bucket, Key=key)
            return answer["Body"].read(), str(answer["ETag"])
        except self._client.exceptions.NoSuchKey:
            return None, ABSENT
        except Exception as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc

    def put(self, path: str, data: bytes, expect: str | None) -> str:
        """Write the object in one PUT; with `expect`, only over that version (ABSENT: only
        if there is none). Returns the new version."""
        bucket, key = _split(path)
        options: dict[str, str] = {}
        if expect == ABSENT:
            options["IfNoneMatch"] = "*"
        elif expect is not None:
            options["IfMatch"] = expect
        try:
            answer = self._client.put_object(Bucket=bucket, Key=key, Body=data, **options)
        except Exception as exc:
            raise _converted(exc, path, "write") from exc
        return str(answer["ETag"])

    def delete(self, path: str, expect: str | None) -> None:
        """Delete the object; with `expect`, only that version of it."""
        bucket, key = _split(path)
        options = {"IfMatch": expect} if expect else {}
        try:
            self._client.delete_object(Bucket=bucket, Key=key, **options)
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return
            raise _converted(exc, path, "delete") from exc


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _converted(exc: Exception, path: str, what: str) -> StorageError:
    if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
        return WriteConflict(f"{path} was changed by another writer meanwhile")
    return StorageError(f"cannot {what} {path}: {exc}")
