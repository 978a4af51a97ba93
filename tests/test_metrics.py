"""Confidence intervals and paired tests against values worked out by hand or published."""
from __future__ import annotations

from math import comb, sqrt

import pytest

from toolformer.stats import Z95, accuracy, mcnemar_exact, newcombe_paired, paired, wilson


def test_wilson_28_of_100_by_hand():
    z2 = Z95 ** 2
    centre = (0.28 + z2 / 200) / (1 + z2 / 100)
    half = Z95 * sqrt(0.28 * 0.72 / 100 + z2 / 40000) / (1 + z2 / 100)
    assert wilson(28, 100) == pytest.approx((centre - half, centre + half))
    assert wilson(28, 100) == pytest.approx((0.2014, 0.3749), abs=1e-4)


def test_wilson_at_the_ends_is_exact_and_not_empty():
    assert wilson(0, 10) == (0.0, pytest.approx(Z95 ** 2 / (10 + Z95 ** 2)))
    assert wilson(10, 10) == (pytest.approx(10 / (10 + Z95 ** 2)), 1.0)
    assert wilson(0, 1)[1] > 0.5 and wilson(1, 1)[0] < 0.5  # one example says little
    with pytest.raises(ValueError):
        wilson(1, 0)


def test_mcnemar_exact_by_hand():
    # b=10, c=2: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == mcnemar_exact(2, 10) == 2 * 79 / 4096 == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar_exact(0, 0) == 1.0                      # no discordant pair: no evidence
    assert mcnemar_exact(3, 3) == 1.0                      # the two-sided tail is capped at 1
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(0, 1000) == pytest.approx(2 * 0.5 ** 1000)  # exact integers, no overflow
    assert mcnemar_exact(500, 520) == pytest.approx(2 * sum(comb(1020, i) for i in range(501)) / 2 ** 1020)


def test_newcombe_paired_matches_the_published_example():
    # Fagerland, Lydersen & Laake, "Statistical analysis of contingency tables", ch. 8 (Cavo et al.
    # 2012), row minus column variable: 59 both, 6 only the row's, 16 only the column's, 80 neither:
    # -0.0621 (95% CI -0.1186 to -0.0046). Here "second" is the row variable.
    low, high = newcombe_paired(both=59, only_second=6, only_first=16, neither=80)
    assert (low, high) == pytest.approx((-0.1186, -0.0046), abs=1e-4)


def test_paired_figures_and_edge_cases():
    off = [True] * 20 + [False] * 80
    on = [True] * 18 + [False] * 2 + [True] * 10 + [False] * 70  # 2 lost, 10 gained
    result = paired(off, on)
    assert (result["only_first"], result["only_second"], result["both"], result["neither"]) == (2, 10, 18, 70)
    assert result["difference"] == 0.08 and result["p_value"] == mcnemar_exact(2, 10)
    assert result["first"] == accuracy(off) and result["second"]["accuracy"] == 0.28
    assert result["ci"][0] < 0.08 < result["ci"][1]
    # no discordant pair: no difference, p = 1, an interval around 0
    same = paired([True, False, True], [True, False, True])
    assert same["difference"] == 0 and same["p_value"] == 1.0 and same["ci"][0] < 0 < same["ci"][1]
    # all wrong then all right: the interval stays inside [-1, 1] and excludes 0
    swing = paired([False] * 10, [True] * 10)
    assert swing["difference"] == 1.0 and 0 < swing["ci"][0] < 1 and swing["ci"][1] == 1.0
    assert paired([True] * 5, [True] * 5)["ci"][1] <= 1 and paired([False] * 5, [False] * 5)["ci"][0] >= -1
    with pytest.raises(ValueError):
        paired([True], [True, False])


def test_accuracy_carries_its_interval():
    assert accuracy([True] * 28 + [False] * 72) == {"accuracy": 0.28, "correct": 28, "n": 100,
                                                    "ci": [0.2014, 0.3749]}
