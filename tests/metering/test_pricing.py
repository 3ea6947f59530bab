"""Pricing rules, with the arithmetic written out by hand in Decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.events import Usage
from relay.metering.pricing import WILDCARD, Price, PriceBook, PriceError, round_cost

D = Decimal
M = D(1_000_000)


def book() -> PriceBook:
    return PriceBook(
        [
            Price("openai", "gpt-realtime", "input_text_tokens", D("4.00")),
            Price("openai", "gpt-realtime", "cached_input_tokens", D("0.40")),
            Price("openai", "gpt-realtime", "output_text_tokens", D("16.00")),
            Price("openai", "gpt-realtime", "input_audio_tokens", D("32.00")),
            Price("openai", "gpt-realtime", "output_audio_tokens", D("64.00")),
            Price("openai", WILDCARD, "input_text_tokens", D("5")),
            Price("tts", "fast", "characters", D("0.05")),
            Price("phone", "*", "audio_in_ms", D("0.017")),
        ]
    )


def test_tokens_are_priced_per_million() -> None:
    usage = Usage(input_text_tokens=1234, output_text_tokens=56, input_audio_tokens=789, output_audio_tokens=4321)
    charge = book().charge("openai", "gpt-realtime", usage)
    expected = (D(1234) * D("4.00") + D(56) * D("16.00") + D(789) * D("32.00") + D(4321) * D("64.00")) / M
    assert charge.cost == expected.quantize(D("1e-10"))
    assert charge.price_model == "gpt-realtime" and not charge.unpriced
    assert charge.rates["output_audio_tokens"] == D("64.00")


def test_cached_tokens_come_off_text_input_first_then_audio() -> None:
    usage = Usage(input_text_tokens=100, input_audio_tokens=1000, cached_input_tokens=300)
    charge = book().charge("openai", "gpt-realtime", usage)
    # 300 cached: 100 taken off text (leaving 0), 200 off audio (leaving 800).
    assert charge.billed["input_text_tokens"] == 0
    assert charge.billed["input_audio_tokens"] == 800
    assert charge.cost == (D(800) * D("32.00") + D(300) * D("0.40")) / M


def test_cached_tokens_never_exceed_the_input_they_are_part_of() -> None:
    charge = book().charge("openai", "gpt-realtime", Usage(input_text_tokens=10, cached_input_tokens=50))
    assert charge.billed["cached_input_tokens"] == 10
    assert charge.cost == D(10) * D("0.40") / M


def test_without_a_cached_price_cached_tokens_are_ordinary_input() -> None:
    charge = book().charge("openai", "some-new-model", Usage(input_text_tokens=1000, cached_input_tokens=400))
    assert charge.price_model == WILDCARD  # the provider's fallback rows
    assert charge.cost == D(1000) * D(5) / M


def test_a_models_own_rows_are_never_topped_up_from_the_wildcard() -> None:
    # gpt-realtime has no characters row and neither has "*": characters cost nothing, but the
    # point is that a unit missing from the model's own rows does not fall back to "*" rows.
    b = PriceBook([Price("p", "m", "output_text_tokens", D(1)), Price("p", "*", "input_text_tokens", D(1))])
    charge = b.charge("p", "m", Usage(input_text_tokens=1_000_000, output_text_tokens=1_000_000))
    assert charge.cost == D(1)


def test_characters_are_priced_per_thousand_and_minutes_per_60000_ms() -> None:
    assert book().charge("tts", "fast", Usage(characters=1234)).cost == D(1234) * D("0.05") / D(1000)
    minute_charge = book().charge("phone", "x", Usage(audio_in_ms=1)).cost
    assert minute_charge == (D("0.017") / D(60_000)).quantize(D("1e-10"))  # 2.833...e-7, rounded once
    assert minute_charge == D("0.0000002833")


def test_no_price_at_all_is_zero_and_flagged() -> None:
    charge = book().charge("nobody", "m", Usage(input_text_tokens=10**9))
    assert charge.unpriced and charge.cost == 0 and charge.rates == {}


def test_rounding_is_half_even_at_ten_places() -> None:
    assert round_cost(D("0.00000000005")) == D("0E-10")
    assert round_cost(D("0.00000000015")) == D("2E-10")
    assert round_cost(D("0.000000000250001")) == D("3E-10")


def test_huge_quantities_stay_exact() -> None:
    usage = Usage(output_audio_tokens=(1 << 63) - 1)
    assert book().charge("openai", "gpt-realtime", usage).cost == D((1 << 63) - 1) * D(64) / M


@pytest.mark.parametrize(
    ("unit", "usd"),
    [
        ("dollars", D(1)),
        ("characters", D(-1)),
        ("characters", D("NaN")),
        ("characters", D("1e-13")),
        ("characters", D("1e10")),
    ],
)
def test_impossible_prices_are_refused(unit: str, usd: Decimal) -> None:
    with pytest.raises(PriceError):
        Price("p", "m", unit, usd)
