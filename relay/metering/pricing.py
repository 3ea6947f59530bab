"""Pricing: what a response's usage costs under a price table. Pure functions, Decimal only.

Units and the quantity each price is for (a price is "USD per <basis>"):

===========================  =====================  ===============================================
unit                         basis                  note
===========================  =====================  ===============================================
``input_text_tokens``        1,000,000 tokens
``input_audio_tokens``       1,000,000 tokens
``cached_input_tokens``      1,000,000 tokens       a part of the input tokens (see below)
``output_text_tokens``       1,000,000 tokens
``output_audio_tokens``      1,000,000 tokens
``characters``               1,000 characters       TTS
``audio_in_ms``              1 minute (60,000 ms)   for providers that bill by time; none of the
``audio_out_ms``             1 minute (60,000 ms)   seeded ones does, so the seed has no such rows
===========================  =====================  ===============================================

Which prices apply: the rows for exactly (provider, model) if there are any, else the provider's
``*`` rows (the fallback for models the table does not name), else none — the event is then
recorded at zero cost and flagged ``unpriced`` (and counted), never dropped. The match is per
model, not per unit: a model's own rows are never topped up with ``*`` rows. A unit with no row in
the applying set is not charged (TTS has no token prices, realtime models no character prices).

Cached input: both OpenAI and Gemini report cached tokens as a *part* of the input tokens, and the
normalized usage does not say whether they were text or audio. When the applying set has a
``cached_input_tokens`` price, the cached tokens are charged at it and taken off the uncached input
— off the text tokens first, then off the audio tokens. The instructions at the head of a cached
prefix are text; and since uncached audio is the dearer input, this rule never charges less than
the provider would. Without a cached price, cached tokens are charged as ordinary input.

Rounding: each unit's charge is computed with Decimal to 60 significant digits (exact for tokens
and characters, whose bases are powers of ten); a record's cost is their sum rounded once,
half-even, to ``COST_PLACES`` (10) decimal places and stored so. Sums of records
are exact sums of those stored values. Display rounding (to cents, say) is the reader's business.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from providers.events import Usage

UNITS: Final = (
    "input_text_tokens",
    "input_audio_tokens",
    "cached_input_tokens",
    "output_text_tokens",
    "output_audio_tokens",
    "characters",
    "audio_in_ms",
    "audio_out_ms",
)
TOKEN_UNITS: Final = frozenset(u for u in UNITS if u.endswith("_tokens"))
# How many of a unit one price is for.
BASIS: Final[Mapping[str, int]] = {
    **{u: 1_000_000 for u in TOKEN_UNITS},
    "characters": 1_000,
    "audio_in_ms": 60_000,
    "audio_out_ms": 60_000,
}
BASIS_LABEL: Final[Mapping[str, str]] = {
    **{u: "1M tokens" for u in TOKEN_UNITS},
    "characters": "1K characters",
    "audio_in_ms": "minute",
    "audio_out_ms": "minute",
}
WILDCARD: Final = "*"
COST_PLACES: Final = 10
QUANTUM: Final = Decimal(1).scaleb(-COST_PLACES)
ZERO: Final = QUANTUM * 0
# Bounds on a price row: a price is USD per basis; more than 12 places or a billion dollars is a typo.
MAX_PRICE: Final = Decimal(1_000_000_000)
MAX_PRICE_PLACES: Final = 12
# Token and character charges are exact in it (division by a power of ten); a per-minute charge
# (division by 60,000) is carried to 60 significant digits, far past the 10 places a record keeps.
_WIDE = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation, decimal.Overflow])


class PriceError(ValueError):
    """A price row that cannot be right (unknown unit, negative, not a finite decimal, ...)."""


@dataclass(frozen=True, slots=True)
class Price:
    provider: str
    model: str  # a model name, or "*" for the provider's fallback
    unit: str
    usd: Decimal  # per BASIS[unit]
    source: str = ""
    as_of: str = ""  # ISO 8601 date, to the precision the source gives (2026-05-16, 2026-06, 2026)

    def __post_init__(self) -> None:
        validate_price(self)

    def as_json(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "model": self.model,
            "unit": self.unit,
            "usd": str(self.usd),
            "per": BASIS_LABEL[self.unit],
            "source": self.source,
            "as_of": self.as_of,
        }


def validate_price(price: Price) -> None:
    if not price.provider or not price.model:
        raise PriceError("a price needs a provider and a model (or '*')")
    if price.unit not in BASIS:
        raise PriceError(f"unknown unit {price.unit[:40]!r}; units: {', '.join(UNITS)}")
    usd = price.usd
    if not isinstance(usd, Decimal) or not usd.is_finite():
        raise PriceError("a price must be a finite decimal")
    if usd < 0 or usd > MAX_PRICE:
        raise PriceError(f"a price must be between 0 and {MAX_PRICE}")
    exponent = usd.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_PRICE_PLACES:
        raise PriceError(f"a price may have at most {MAX_PRICE_PLACES} decimal places")


@dataclass(frozen=True, slots=True)
class Charge:
    """What one response event costs, and the prices it was charged at (copied into its record)."""

    cost: Decimal
    rates: Mapping[str, Decimal]  # unit -> USD per basis, for every unit the applying set prices
    price_model: str | None  # the model whose rows applied: the event's own, "*", or None
    billed: Mapping[str, int]  # the quantities charged per unit (cached tokens moved out of input)

    @property
    def unpriced(self) -> bool:
        return self.price_model is None


UNPRICED: Final = Charge(ZERO, {}, None, {})


class PriceBook:
    """A snapshot of (part of) the price table, indexed for lookups."""

    def __init__(self, prices: Iterable[Price] = ()) -> None:
        self._sets: dict[tuple[str, str], dict[str, Decimal]] = {}
        for p in prices:
            self._sets.setdefault((p.provider, p.model), {})[p.unit] = p.usd

    def rates_for(self, provider: str, model: str) -> tuple[str, Mapping[str, Decimal]] | None:
        """(the model whose rows apply, its rates), or None when nothing applies."""
        for candidate in (model, WILDCARD):
            rates = self._sets.get((provider, candidate))
            if rates:
                return candidate, rates
        return None

    def charge(self, provider: str, model: str, usage: Usage) -> Charge:
        found = self.rates_for(provider, model)
        if found is None:
            return UNPRICED
        price_model, rates = found
        return charge(usage, rates, price_model)


def billed_quantities(usage: Usage, rates: Mapping[str, Decimal]) -> dict[str, int]:
    q = usage.to_dict()
    if "cached_input_tokens" in rates:
        cached = min(q["cached_input_tokens"], q["input_text_tokens"] + q["input_audio_tokens"])
        from_text = min(cached, q["input_text_tokens"])
        q["input_text_tokens"] -= from_text
        q["input_audio_tokens"] -= cached - from_text
        q["cached_input_tokens"] = cached
    else:
        q["cached_input_tokens"] = 0  # charged as the ordinary input they are part of
    return q


def charge(usage: Usage, rates: Mapping[str, Decimal], price_model: str) -> Charge:
    billed = billed_quantities(usage, rates)
    total = Decimal(0)
    for unit, rate in rates.items():
        total = _WIDE.add(total, _WIDE.divide(_WIDE.multiply(Decimal(billed[unit]), rate), Decimal(BASIS[unit])))
    return Charge(round_cost(total), dict(rates), price_model, billed)


def round_cost(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=decimal.ROUND_HALF_EVEN)
