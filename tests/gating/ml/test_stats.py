from __future__ import annotations

import pytest

from gating.ml.stats import intervals_overlap, paired_difference, paired_summary, wilson_interval


def test_it_matches_published_wilson_intervals():
    assert wilson_interval(8, 10) == pytest.approx([0.490, 0.943], abs=5e-4)
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.278], abs=5e-4)
    assert wilson_interval(50, 100) == pytest.approx([0.404, 0.596], abs=5e-4)
    assert wilson_interval(0, 0) is None


def test_it_pairs_differences_on_the_same_rows():
    a = [1, 1, 1, 1, 0, 1, 1, 1, 0, 1]
    b = [1, 0, 1, 0, 0, 1, 1, 0, 0, 1]  # b is never right where a is wrong
    out = paired_difference(a, b)
    assert out["difference"] == pytest.approx(0.3)
    # d = three 1s and seven 0s: sd = sqrt(0.21 * 10 / 9), se = sd / sqrt(10)
    se = (0.21 * 10 / 9 / 10) ** 0.5
    assert out["interval"] == pytest.approx([0.3 - 1.959964 * se, 0.3 + 1.959964 * se], abs=1e-6)
    assert paired_difference(a, a)["interval"] == [0.0, 0.0]
    with pytest.raises(ValueError):
        paired_difference(a, b[:3])


def test_it_summarises_paired_differences_over_domains():
    one = paired_difference([1, 0, 1, 1], [0, 0, 1, 1])
    two = paired_difference([0, 0], [0, 1])
    out = paired_summary({"a": one, "b": two})
    assert out["difference"] == pytest.approx((0.25 - 0.5) / 2)
    assert out["se"] == pytest.approx((one["se"] ** 2 + two["se"] ** 2) ** 0.5 / 2)


def test_it_tells_overlapping_intervals():
    assert intervals_overlap([0.1, 0.5], [0.4, 0.9])
    assert not intervals_overlap([0.1, 0.3], [0.4, 0.9])
    assert not intervals_overlap(None, [0.4, 0.9])
