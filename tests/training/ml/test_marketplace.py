from __future__ import annotations

from collections import Counter

import pytest

from experts.ml.data import DomainData
from training.ml.marketplace import dirichlet_shards, platform_split


def test_it_splits_train_rows_into_disjoint_unequal_label_skewed_shards():
    rows = [(f"text {i}", "abcd"[i % 4]) for i in range(400)]
    shards = dirichlet_shards(rows, 3, alpha=0.5, seed=0, min_shard=20)
    flat = [r for s in shards for r in s]
    assert sorted(flat) == sorted(rows)  # disjoint and complete
    sizes = [len(s) for s in shards]
    assert min(sizes) >= 20 and len(set(sizes)) == 3
    # label-skewed: some shard's label mix is far from the uniform 25 % each
    shares = [max(Counter(y for _, y in s).values()) / len(s) for s in shards]
    assert max(shares) > 0.4
    assert dirichlet_shards(rows, 3, alpha=0.5, seed=0) == shards  # deterministic per seed


def test_the_routers_rows_are_held_out_from_every_contributor():
    rows = [(f"text {i}", "ab"[i % 2]) for i in range(100)]
    domain = DomainData(name="d", description="", labels=["a", "b"], train=rows, dev=[])
    contributed, for_router = platform_split(domain, 0.2, seed=3)
    assert len(for_router) == 20 and not set(contributed) & set(for_router)
    assert sorted(contributed + for_router) == sorted(rows)
    assert platform_split(domain, 0.2, seed=3) == (contributed, for_router)
    assert platform_split(domain, 0.0, seed=3) == (rows, rows)  # the old behaviour, on request
    for wrong in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"router_fraction must be in \[0, 1\)"):
            platform_split(domain, wrong, seed=3)
