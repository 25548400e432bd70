"""Histograms: exact where promised, within the stated bound elsewhere, and merge = union."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trimail.bench.stats import (
    EXACT_BELOW,
    RELATIVE_ERROR,
    Histogram,
    ResultFormatError,
    RunStats,
    bucket_bounds,
    bucket_index,
)


def histogram_of(values: list[int]) -> Histogram:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    return histogram


def nearest_rank(values: list[int], percent: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def test_small_values_are_exact() -> None:
    values = list(range(EXACT_BELOW))
    histogram = histogram_of(values)
    for percent in (1, 10, 50, 90, 99, 100):
        assert histogram.percentile(percent) == nearest_rank(values, percent)


def test_uniform_milliseconds_give_the_textbook_percentiles() -> None:
    # 1 ms .. 1000 ms: p50 = 500 ms, p90 = 900 ms, p99 = 990 ms, max = 1000 ms.
    values = [ms * 1_000_000 for ms in range(1, 1001)]
    random.Random(7).shuffle(values)
    histogram = histogram_of(values)
    for percent, expected_ms in ((50, 500), (90, 900), (99, 990)):
        got = histogram.percentile(percent)
        assert abs(got - expected_ms * 1_000_000) <= RELATIVE_ERROR * expected_ms * 1_000_000
    assert histogram.percentile(100) == histogram.maximum == 1000 * 1_000_000
    assert histogram.minimum == 1_000_000
    assert histogram.count == 1000
    assert histogram.mean() == pytest.approx(500.5 * 1_000_000)


def test_a_bimodal_distribution_puts_p99_in_the_slow_mode() -> None:
    values = [2_000_000] * 980 + [200_000_000] * 20
    histogram = histogram_of(values)
    assert histogram.percentile(50) == pytest.approx(2_000_000, rel=RELATIVE_ERROR)
    assert histogram.percentile(98) == pytest.approx(2_000_000, rel=RELATIVE_ERROR)
    assert histogram.percentile(99) == pytest.approx(200_000_000, rel=RELATIVE_ERROR)
    assert histogram.percentile(100) == 200_000_000  # the exact maximum


def test_empty_histogram() -> None:
    histogram = Histogram()
    assert histogram.percentile(50) == 0
    assert histogram.mean() == 0.0


def test_buckets_tile_the_integers_without_gaps() -> None:
    previous_high = -1
    for index in range(64 * 128):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        assert bucket_index(low) == bucket_index(high) == index
        assert high - low <= low * 2 * RELATIVE_ERROR
        previous_high = high


@given(st.integers(min_value=0, max_value=10**13))
def test_every_value_is_within_the_bound_of_its_bucket_midpoint(value: int) -> None:
    low, high = bucket_bounds(bucket_index(value))
    assert low <= value <= high
    midpoint = (low + high) // 2
    assert abs(midpoint - value) <= max(1, value) * RELATIVE_ERROR


@given(
    st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=300),
    st.floats(min_value=0.1, max_value=100.0),
)
def test_percentiles_are_within_the_stated_relative_error(
    values: list[int], percent: float
) -> None:
    exact = nearest_rank(values, percent)
    assert abs(histogram_of(values).percentile(percent) - exact) <= exact * RELATIVE_ERROR


@given(
    st.lists(st.integers(min_value=0, max_value=10**12), max_size=200),
    st.lists(st.integers(min_value=0, max_value=10**12), max_size=200),
)
def test_merge_equals_the_histogram_of_the_union(left: list[int], right: list[int]) -> None:
    merged = histogram_of(left)
    merged.merge(histogram_of(right))
    union = histogram_of(left + right)
    assert merged.to_json() == union.to_json()
    for percent in (50, 90, 99, 100):
        assert merged.percentile(percent) == union.percentile(percent)


def test_histogram_json_round_trip_and_rejects_garbage() -> None:
    histogram = histogram_of([5, 500, 5_000_000, 5_000_000])
    again = Histogram.from_json(histogram.to_json())
    assert again.to_json() == histogram.to_json()
    bad = histogram.to_json()
    bad["count"] = 3
    with pytest.raises(ResultFormatError):
        Histogram.from_json(bad)
    with pytest.raises(ResultFormatError):
        Histogram.from_json({"count": 1, "total": 1, "min": 1, "max": 1, "buckets": [[1, -1]]})
    with pytest.raises(ResultFormatError):
        Histogram.from_json([1, 2])


def test_run_stats_merge_adds_counts_and_keeps_the_longest_time() -> None:
    first, second = RunStats(), RunStats()
    first.phases["mail"].record(1_000)
    second.phases["mail"].record(3_000)
    first.attempted, first.messages, first.seconds = 10, 9, 2.0
    second.attempted, second.messages, second.seconds = 5, 5, 3.0
    first.reply_error(451)
    second.reply_error(451)
    second.reply_error(421)
    second.connection_error("reset")
    first.merge(RunStats.from_json(second.to_json()))
    assert (first.attempted, first.messages, first.seconds) == (15, 14, 3.0)
    assert first.errors_by_code == {"451": 2, "421": 1}
    assert first.connection_errors == {"reset": 1}
    assert first.errors == 4
    assert first.phases["mail"].count == 2
    assert first.phases["mail"].maximum == 3_000
