"""Uncertainty of accuracies, Django-free: Wilson intervals and paired differences."""
from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> list[float] | None:
    """95 % Wilson score interval of a proportion k/n (None when n == 0).

    centre = (p + z²/2n) / (1 + z²/n);  half = z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).
    """
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def accuracy_interval(accuracy: float, n: int, *, z: float = Z95) -> list[float] | None:
    """The Wilson interval of an accuracy measured on n rows (successes = round(acc * n))."""
    return wilson_interval(round(accuracy * n), n, z=z)


def paired_difference(a: Sequence[int | bool], b: Sequence[int | bool], *, z: float = Z95
                      ) -> dict:
    """Accuracy of a minus accuracy of b on the same rows, with a paired 95 % interval.

    Normal approximation on the per-row differences d_i = a_i - b_i (each in {-1, 0, 1}):
    mean(d) ± z · sd(d) / sqrt(n), sd with n - 1 in the denominator; rows agreeing cancel.
    """
    if len(a) != len(b):
        raise ValueError(f"paired rows differ in number: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return {"difference": None, "interval": None, "n": 0, "se": None}
    d = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n)
    return {"difference": mean, "interval": [mean - z * se, mean + z * se], "n": n, "se": se}


def paired_summary(per_domain: dict[str, dict], *, z: float = Z95) -> dict:
    """The unweighted mean over domains of paired differences, with its 95 % interval.

    difference = mean_d diff_d;  se = sqrt(sum_d se_d²) / D  (domains' rows are independent).
    """
    parts = [p for p in per_domain.values() if p.get("difference") is not None]
    if not parts:
        return {"difference": None, "interval": None, "n": 0, "se": None}
    mean = sum(p["difference"] for p in parts) / len(parts)
    se = math.sqrt(sum(p["se"] ** 2 for p in parts)) / len(parts)
    return {"difference": mean, "interval": [mean - z * se, mean + z * se],
            "n": sum(p["n"] for p in parts), "se": se}


def intervals_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two intervals [lo, hi] share a point (False if either is missing)."""
    if not a or not b:
        return False
    return a[0] <= b[1] and b[0] <= a[1]


def _hits(report: dict, domain: str) -> list[int] | None:
    bits = (report.get("row_hits") or {}).get(domain)
    return [int(c) for c in bits] if isinstance(bits, str) else None


def compare_reports(candidate: dict, production: dict) -> dict:
    """Candidate vs production evaluation reports, per domain and summary accuracy.

    A domain is paired when both reports carry per-row hits on rows with the same digest; then
    its difference has a paired interval (paired_difference), and the summary one when every
    shared domain is paired (paired_summary). `worse`: the candidate's summary accuracy is lower.
    """
    cand_d, prod_d = candidate.get("domains") or {}, production.get("domains") or {}
    digests_c, digests_p = candidate.get("rows_digest") or {}, production.get("rows_digest") or {}
    per = {}
    for name in sorted(set(cand_d) & set(prod_d)):
        a, b = cand_d[name].get("accuracy"), prod_d[name].get("accuracy")
        row = {"candidate": a, "production": b,
               "difference": None if a is None or b is None else a - b,
               "interval": None, "paired": False, "n": None}
        ha, hb = _hits(candidate, name), _hits(production, name)
        same = digests_c.get(name) is not None and digests_c.get(name) == digests_p.get(name)
        if same and ha is not None and hb is not None and len(ha) == len(hb):
            paired = paired_difference(ha, hb)
            row.update(difference=paired["difference"], interval=paired["interval"],
                       paired=True, n=paired["n"], se=paired["se"])
        per[name] = row
    sc = (candidate.get("summary") or {}).get("accuracy")
    sp = (production.get("summary") or {}).get("accuracy")
    summary = {"candidate": sc, "production": sp,
               "difference": None if sc is None or sp is None else sc - sp,
               "interval": None, "paired": False}
    same_domains = set(cand_d) == set(prod_d) and bool(per)
    if same_domains and all(r["paired"] for r in per.values()):
        paired = paired_summary(per)
        summary.update(difference=paired["difference"], interval=paired["interval"],
                       paired=True, n=paired["n"])
    diff = summary["difference"]
    return {"domains": per, "summary": summary, "worse": diff is not None and diff < 0}
