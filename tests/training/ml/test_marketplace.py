from __future__ import annotations

from collections import Counter

from training.ml.marketplace import dirichlet_shards


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
