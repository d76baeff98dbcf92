"""What a model response cost, in USD, from the maintained ``genai-prices`` package.

``priced(usage, model, model_name)`` gives the response's :class:`~loom_nb.messages.Usage` its
``cost``. Prices are never a hand-kept table here: they come from ``genai-prices`` (pydantic's
price data, ``pip install 'loom-nb[cost]'``), which prices cache reads and writes as each
provider does (``input_tokens`` counts them too, as loom_nb's usage does). The cost is None, never
0, when it is not known: a provider genai-prices does not know (the scripted and function test
models, an OpenAI-compatible server at an address it cannot place), a model it has no price for,
or the package missing.

genai-prices computes a price in ``Decimal`` over its unit registry, about 0.2-0.4 ms a call here:
more than a whole loom_nb turn costs. Most prices are linear in each token count, so for each
model price this module asks genai-prices once for the price of 1,000 tokens of each kind and
then multiplies (about 1 µs). Where a price has tiers (a higher rate past some input size), a
request that reaches the lowest tier's start is priced by genai-prices itself.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from .messages import Usage

if TYPE_CHECKING:
    from .models import Model

__all__ = ["available", "price", "priced"]

#: loom_nb providers whose models genai-prices knows under the same id.
_PROVIDERS = {"anthropic": "anthropic", "openai": "openai"}
_PROBE = 1000  # tokens per probe: under any tier's start


class _Rates(NamedTuple):
    """USD per token of each kind, for one genai-prices model price (linear below ``below``)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    below: int | None  # the lowest tier start of a tiered price: from there, genai-prices prices


_lock = threading.Lock()
_found: dict[tuple[str, str, str | None], Any] = {}  # (provider, model, api url) -> match or None
_rates: dict[int, tuple[Any, _Rates]] = {}  # id(model price) -> (that price, its rates)
_missing: list[bool] = []  # [True] once the import failed: not tried on every response


def available() -> bool:
    """Whether ``genai-prices`` is installed (``pip install 'loom-nb[cost]'``)."""
    return _snapshot() is not None


def priced(usage: Usage, model: Model, model_name: str | None = None) -> Usage:
    """``usage`` with its ``cost``: what one response of ``model`` (reported as ``model_name``)
    cost in USD, or None when that is not known."""
    provider = model.provider
    if provider == "replay":  # a recording is priced as the model it was recorded from
        provider = str(getattr(model, "recorded_model", "")).partition(":")[0]
    cost = price(usage, provider, model_name or model.name, _api_url(model))
    return usage if cost is None else replace(usage, cost=cost)


def price(usage: Usage, provider: str, model_name: str, api_url: str | None = None) -> float | None:
    """What ``usage`` cost at ``provider``'s price for ``model_name``, in USD; None if unknown.

    ``api_url``: the base URL of a server other than the vendor's own; genai-prices then places
    the provider by it (an OpenAI-compatible server it does not know has no known price).
    """
    if usage.empty:
        return None
    match = _match(provider, model_name, api_url)
    if match is None:
        return None
    found_provider, found_model = match
    now = datetime.now(tz=UTC)
    model_price = found_model.get_prices(now)
    rates = _rates_of(model_price, found_model, found_provider, now)
    if rates.below is not None and usage.input_tokens >= rates.below:
        return _exact(usage, found_model, found_provider, now)
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    return (uncached * rates.input + usage.output_tokens * rates.output
            + usage.cache_read_tokens * rates.cache_read + usage.cache_write_tokens * rates.cache_write)


def _api_url(model: Model) -> str | None:
    base_url, default = getattr(model, "base_url", None), getattr(model, "default_base_url", None)
    if not isinstance(base_url, str) or not isinstance(default, str):
        return None
    return None if base_url.rstrip("/") == default.rstrip("/") else base_url


def _snapshot() -> Any:
    if _missing:
        return None
    try:
        from genai_prices import data_snapshot
    except ImportError:
        _missing.append(True)
        return None
    return data_snapshot.get_snapshot()


def _match(provider: str, model_name: str, api_url: str | None) -> Any:
    """genai-prices' (provider, model) for this model, or None; looked up once per model."""
    key = (provider, model_name, api_url)
    try:
        return _found[key]
    except KeyError:
        pass
    found = None
    snapshot = _snapshot() if provider in _PROVIDERS else None  # a test model imports nothing
    if snapshot is not None:
        found = _find(snapshot, _PROVIDERS[provider], model_name, api_url)
    with _lock:
        _found[key] = found
    return found


def _find(snapshot: Any, provider_id: str, model_name: str, api_url: str | None) -> Any:
    attempts: list[tuple[str | None, str | None]] = []
    if api_url is not None:
        attempts.append((None, api_url))
        if provider_id == "anthropic":  # a proxy in front of Anthropic still bills Anthropic's price
            attempts.append((provider_id, None))
    else:
        attempts.append((provider_id, None))
    for by_id, by_url in attempts:
        try:
            return snapshot.find_provider_model(model_name, None, by_id, by_url)
        except LookupError:
            continue
    return None


def _rates_of(model_price: Any, model: Any, provider: Any, now: Any) -> _Rates:
    cached = _rates.get(id(model_price))
    if cached is not None and cached[0] is model_price:
        return cached[1]

    def per_token(**tokens: int) -> float:
        return _exact(Usage(**tokens), model, provider, now) / _PROBE

    rates = _Rates(input=per_token(input_tokens=_PROBE), output=per_token(output_tokens=_PROBE),
                   cache_read=per_token(input_tokens=_PROBE, cache_read_tokens=_PROBE),
                   cache_write=per_token(input_tokens=_PROBE, cache_write_tokens=_PROBE),
                   below=_lowest_tier(model_price))
    with _lock:
        _rates[id(model_price)] = (model_price, rates)
    return rates


def _lowest_tier(model_price: Any) -> int | None:
    from genai_prices.types import TieredPrices

    starts = [tier.start for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
              if isinstance(value := getattr(model_price, name, None), TieredPrices)
              for tier in value.tiers]
    return min(starts) if starts else None


def _exact(usage: Usage, model: Any, provider: Any, now: Any) -> float:
    """genai-prices' own price of ``usage`` (Decimal arithmetic over its registry)."""
    import genai_prices

    counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
              "cache_read_tokens": usage.cache_read_tokens,
              "cache_write_tokens": usage.cache_write_tokens}
    calculation = model.calc_price(genai_prices.Usage(**counts), provider,
                                   genai_request_timestamp=now, auto_update_timestamp=None)
    return float(calculation.total_price)
