"""Confidence intervals and paired tests for accuracies, so a table says how far to trust it.

    wilson(k, n)            95% Wilson score interval of an accuracy k/n
    mcnemar_exact(b, c)     two-sided exact McNemar p-value on the discordant pairs
    paired(first, second)   the same examples scored twice (tools off vs on, model A vs B):
                            both accuracies with CIs, the difference second - first with
                            Newcombe's paired interval, and McNemar's p

Newcombe's interval (method 10 of Newcombe, Statistics in Medicine 1998, 17:2635) combines the
two Wilson intervals, corrected for the correlation of the paired outcomes (with the continuity
correction of the correlation that Newcombe uses). It stays inside [-1, 1] and behaves at 0/n
and n/n, where the Wald interval collapses.
"""
from __future__ import annotations

from math import comb, sqrt
from statistics import NormalDist
from typing import Sequence

Z95 = NormalDist().inv_cdf(0.975)  # 1.95996...


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n and n > 0, got {k}/{n}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exact ends at 0/n and n/n, where rounding would leave a hair's breadth
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of b successes in b + c fair coin flips
    (b, c: the pairs where only one of the two was right). No discordant pair gives 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** n)  # exact integers until this one division


def newcombe_paired(both: int, only_second: int, only_first: int, neither: int,
                    z: float = Z95) -> tuple[float, float]:
    """Newcombe's interval for p(second right) - p(first right) on paired outcomes."""
    n = both + only_second + only_first + neither
    p2, p1 = (both + only_second) / n, (both + only_first) / n
    l2, u2 = wilson(both + only_second, n, z)
    l1, u1 = wilson(both + only_first, n, z)
    # correlation of the two outcomes, shrunk towards 0 by half a count (Newcombe's correction)
    margins = (both + only_second) * (only_first + neither) * (both + only_first) * (only_second + neither)
    cross = both * neither - only_second * only_first
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / sqrt(margins)
    diff = p2 - p1
    below = sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1))
    above = sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2))
    return max(-1.0, diff - below), min(1.0, diff + above)


def accuracy(correct: Sequence[bool]) -> dict:
    """Accuracy of one list of outcomes with its 95% Wilson interval."""
    k, n = sum(map(bool, correct)), len(correct)
    low, high = wilson(k, n)
    return {"accuracy": round(k / n, 4), "correct": k, "n": n, "ci": [round(low, 4), round(high, 4)]}


def paired(first: Sequence[bool], second: Sequence[bool]) -> dict:
    """Paired comparison of two outcome lists on the same examples, in the same order."""
    if len(first) != len(second) or not first:
        raise ValueError(f"a paired comparison needs two equally long, non-empty lists "
                         f"({len(first)} and {len(second)})")
    pairs = [(bool(a), bool(b)) for a, b in zip(first, second)]
    both = pairs.count((True, True))
    only_first, only_second = pairs.count((True, False)), pairs.count((False, True))
    neither = len(pairs) - both - only_first - only_second
    low, high = newcombe_paired(both, only_second, only_first, neither)
    return {"n": len(pairs), "first": accuracy(first), "second": accuracy(second),
            "difference": round((only_second - only_first) / len(pairs), 4), "ci": [round(low, 4), round(high, 4)],
            "p_value": mcnemar_exact(only_first, only_second),
            "only_first": only_first, "only_second": only_second, "both": both, "neither": neither}
