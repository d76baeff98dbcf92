"""One retry policy for every provider: exponential backoff with jitter, honoring retry-after.

The vendor SDKs' own retries are switched off (``max_retries=0``) so that the policy is here, in
one place, and also covers what the SDKs cannot retry: a stream that breaks before the model has
said anything. Once a delta has been handed to the run loop the turn cannot be replayed without
showing the user text twice, so a failure after that point ends the turn with a ModelError (the
loop commits nothing of an incomplete turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from . import ModelResponse, RetryNotice, StreamItem
from ._errors import IncompleteStreamError, ProviderError

__all__ = ["RetryPolicy", "retrying"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry a failed model request.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        base_delay: the first backoff in seconds; it doubles on each retry.
        max_delay: the longest backoff in seconds.
        max_retry_after: the longest server-requested wait (``retry-after``) that is honored;
            a longer one fails at once rather than blocking a notebook cell for minutes.
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            # A small jitter on top keeps many clients told the same time from stampeding.
            return retry_after + random.uniform(0, min(1.0, 0.1 * retry_after))
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        # "Equal jitter": at least half the backoff, so retries really do slow down.
        return random.uniform(ceiling / 2, ceiling)


Classifier = Callable[[BaseException], ProviderError | None]


async def retrying(
    attempt: Callable[[], AsyncGenerator[StreamItem, None]],
    classify: Classifier,
    policy: RetryPolicy,
    label: str,
) -> AsyncIterator[StreamItem]:
    """Run ``attempt()`` and pass its items on, retrying retryable failures before any delta.

    ``classify`` turns a vendor exception into a loom error (None: not a provider failure, which
    propagates unchanged). Cancellation is never caught: it stops the request at once.
    """
    retries = 0
    while True:
        started = False
        try:
            # aclosing: if our consumer stops early, the SDK stream is closed now, on this loop,
            # not whenever the abandoned generator is garbage collected.
            async with contextlib.aclosing(attempt()) as items:
                async for item in items:
                    if not isinstance(item, ModelResponse):
                        started = True
                    yield item
            return
        except Exception as exc:  # noqa: BLE001 - translated below, or re-raised as is
            error = classify(exc)
            if error is None:
                raise
            if error is not exc:
                # Keep the vendor exception as the cause, for debugging; it is never raised.
                error.__cause__ = exc
        if started:
            raise IncompleteStreamError(
                f"The response of {label} broke off after it had started streaming: {error} "
                f"Nothing of this turn was kept; run again to retry.",
                status_code=error.status_code,
            ) from error
        if not error.retryable or retries >= policy.max_retries:
            if error.retryable and retries:
                raise type(error)(f"{error} (gave up after {retries + 1} attempts)",
                                  status_code=error.status_code) from error
            raise error from error.__cause__
        if error.retry_after is not None and error.retry_after > policy.max_retry_after:
            raise type(error)(
                f"{error} The server asked to wait {error.retry_after:.0f} s before retrying, "
                f"longer than max_retry_after={policy.max_retry_after:.0f} s.",
                status_code=error.status_code,
            ) from error
        delay = policy.delay(retries, error.retry_after)
        retries += 1
        yield RetryNotice(attempt=retries, delay=round(delay, 3), error=str(error))
        await asyncio.sleep(delay)
