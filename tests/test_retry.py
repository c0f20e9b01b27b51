"""The retry policies (upbit_cache/retry.py) count, wait and give up as their loops did."""

from __future__ import annotations

import asyncio

import pytest

from upbit_cache import retry
from upbit_cache.errors import ResponseFormatError, WriteConflict


def run_http(failures: list[BaseException], retries: int) -> tuple[int, list[str]]:
    """Attempts until the failures run out (or the policy gives up): how many were made,
    and what `before_retry` was told."""
    told: list[str] = []
    made = 0

    async def main() -> None:
        nonlocal made
        async for attempt in retry.http(retries, 0.0, lambda f: told.append(type(f).__name__)):
            with attempt:
                made += 1
                if failures:
                    raise failures.pop(0)

    asyncio.run(main())
    return made, told


def test_http_counts_each_kind_of_failure_apart() -> None:
    # 3 transient failures (3 retries allowed) and 8 429s (8 allowed), interleaved: it ends well.
    mixed: list[BaseException] = [retry.Transient("x"), retry.RateLimited(0.0)] * 3
    mixed += [retry.RateLimited(0.0)] * 5
    made, told = run_http(mixed, retries=3)
    assert made == 12 and told.count("Transient") == 3 and told.count("RateLimited") == 8


def test_http_gives_up_after_its_retries_with_the_last_failure() -> None:
    with pytest.raises(retry.Transient):
        run_http([retry.Transient(str(i)) for i in range(5)], retries=3)
    with pytest.raises(retry.RateLimited):
        run_http([retry.RateLimited(0.0) for _ in range(retry.RATE_LIMIT_RETRIES + 1)], 5)


def test_http_passes_other_errors_at_once() -> None:
    with pytest.raises(ValueError):
        run_http([ValueError("not ours to retry")], retries=5)


def test_the_page_and_store_policies_try_as_often_as_they_say() -> None:
    async def pages() -> int:
        made = 0
        policy = retry.bad_page()
        policy.sleep = lambda seconds: asyncio.sleep(0)  # type: ignore[method-assign]
        with pytest.raises(ResponseFormatError):
            async for attempt in policy:
                with attempt:
                    made += 1
                    raise ResponseFormatError("bad")
        return made

    assert asyncio.run(pages()) == retry.PAGE_ATTEMPTS
    for policy, failure, tries in [
        (retry.write_race(), WriteConflict("lost"), retry.WRITE_ATTEMPTS),
        (retry.walk_race(), FileNotFoundError("gone"), retry.WALK_TRIES),
    ]:
        policy.sleep = lambda seconds: None
        made = 0
        with pytest.raises(type(failure)):
            for attempt in policy:
                with attempt:
                    made += 1
                    raise failure
        assert made == tries
