"""Fault switches and their query-string form."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from providers.emulation.faults import FAULTS_QUERY_PARAM, Faults, FaultSpecError


def test_parse_and_round_trip() -> None:
    faults = Faults.parse("drop_after_events:12, delay_ms:5,error_on_response:bad day")
    assert faults == Faults(drop_after_events=12, delay_ms=5.0, error_on_response="bad day")
    assert Faults.parse(faults.to_query()) == faults
    assert Faults().to_query() == "" and not Faults().active and faults.active


def test_query_overrides_the_object() -> None:
    base = Faults(delay_ms=3, reject_connect=503)
    query = parse_qs(f"model=x&{FAULTS_QUERY_PARAM}=reject_connect:none,malformed_after_events:2")
    assert base.merged_with_query(query) == Faults(delay_ms=3, malformed_after_events=2)
    assert base.merged_with_query({}) == base


@pytest.mark.parametrize(
    "spec", ["explode:1", "delay_ms", "delay_ms:-1", "drop_after_events:x", "reject_connect:200", "delay_ms:nan"]
)
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        Faults.parse(spec)
