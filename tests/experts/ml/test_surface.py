"""Surface features: stable hashed n-gram ids, bags that slice and join like the trunk's rows."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from experts.ml.features import FeatureCache
from experts.ml.surface import MAX_SURFACE_CHARS, SurfaceBag, surface_ids
from experts.ml.trunk import TrunkSet, TrunkSpec, surface_of


def test_ids_are_distinct_sorted_and_in_range():
    ids = surface_ids("ok lar, c u 2nite", 97)
    assert ids == sorted(set(ids))
    assert all(0 <= i < 97 for i in ids)
    # " ok lar, c u 2nite " has 19 characters: 18 bigrams ... 15 five-grams, plus 5 words;
    # distinct buckets can only be fewer (repeats and collisions)
    assert 0 < len(ids) <= 18 + 17 + 16 + 15 + 5


def test_case_and_spelling_change_the_ids():
    assert surface_ids("Ok lar", 1 << 18) != surface_ids("ok lar", 1 << 18)
    assert surface_ids("it 's charming", 1 << 18) != surface_ids("it's charming", 1 << 18)


def test_ids_do_not_depend_on_the_process():
    # Python's hash() of a str changes per process (PYTHONHASHSEED); crc32 must not.
    code = ("from experts.ml.surface import surface_ids; "
            "print(surface_ids('Free entry in 2 a wkly comp', 1 << 18))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=".", check=True
                           ).stdout for seed in ("1", "2")}
    assert outs == {str(surface_ids("Free entry in 2 a wkly comp", 1 << 18)) + "\n"}


def test_long_texts_are_read_up_to_the_cap():
    head = "x" * MAX_SURFACE_CHARS
    assert surface_ids(head + " tail words", 1 << 18) == surface_ids(head, 1 << 18)


def test_a_row_without_ids_is_an_empty_slice():
    bag = SurfaceBag.of_ids([[], [3, 5]], 64)
    assert bag.offsets.tolist() == [0, 0, 2]
    assert len(bag) == 2 and bag.rows([0]).ids.numel() == 0


def test_a_bucket_count_below_one_is_refused():
    with pytest.raises(ValueError, match="buckets must be >= 1"):
        surface_ids("x", 0)


def test_rows_and_concat_match_bags_built_from_those_texts():
    texts = ["Ok lar", "what is the capital of peru ?", "", "a charming , funny film"]
    bag = SurfaceBag.of_texts(texts, 1 << 12)
    picked = bag.rows(torch.tensor([3, 0, 2]))
    expect = SurfaceBag.of_texts([texts[3], texts[0], texts[2]], 1 << 12)
    assert torch.equal(picked.ids, expect.ids) and torch.equal(picked.offsets, expect.offsets)
    joined = SurfaceBag.concat([bag.rows([0, 1]), bag.rows([2, 3])])
    assert torch.equal(joined.ids, bag.ids) and torch.equal(joined.offsets, bag.offsets)
    empty = bag.rows(torch.tensor([], dtype=torch.long))
    assert len(empty) == 0 and empty.ids.numel() == 0


def test_bags_of_different_bucket_counts_do_not_join():
    with pytest.raises(ValueError, match="different bucket counts"):
        SurfaceBag.concat([SurfaceBag.of_texts(["a"], 8), SurfaceBag.of_texts(["a"], 16)])


def test_trunk_sets_carry_the_bag_through_batches_subsets_and_concat():
    texts = ["alpha beta", "gamma", "delta epsilon zeta", "eta"]
    pooled = torch.arange(8, dtype=torch.float32).view(4, 2)
    full = TrunkSet(pooled={0: pooled}, surface=SurfaceBag.of_texts(texts, 256))
    batch = full.batch([2, 1])
    expect = SurfaceBag.of_texts([texts[2], texts[1]], 256)
    assert torch.equal(batch.surface.ids, expect.ids)
    sub = full.subset([3, 0])
    assert torch.equal(sub.surface.ids, SurfaceBag.of_texts([texts[3], texts[0]], 256).ids)
    both = TrunkSet.concat([full.subset([0, 1]), full.subset([2, 3])])
    assert torch.equal(both.surface.offsets, full.surface.offsets)


def test_the_encoders_attach_a_bag_only_when_the_spec_asks():
    assert surface_of(["a", "b"], TrunkSpec.of(pooled=[0])) is None
    got = surface_of(["a", "b"], TrunkSpec.of(pooled=[0], surface=32))
    assert got is not None and got.buckets == 32 and len(got) == 2


def test_the_feature_cache_hashes_a_text_set_once_and_keeps_the_last_few(tiny_backbone,
                                                                         tmp_path):
    cache = FeatureCache(tmp_path / "fc", tiny_backbone)
    spec = TrunkSpec.of(pooled=[0], surface=64)
    texts = ["the goal", "a Review", "call me l8r"]
    first = cache.load(texts, spec).surface
    assert cache.load(texts, spec).surface is first  # the same set again: not hashed again
    expect = SurfaceBag.of_texts(texts, 64)
    assert torch.equal(first.ids, expect.ids) and torch.equal(first.offsets, expect.offsets)
    other = cache.load(texts[::-1], spec).surface  # another order is another set
    assert torch.equal(other.ids, SurfaceBag.of_texts(texts[::-1], 64).ids)
    assert cache.load(texts, TrunkSpec.of(pooled=[0], surface=32)).surface.buckets == 32
    for i in range(5):  # older sets fall out; the bag is rebuilt, equal to the first
        cache.load([f"text {i}"], spec)
    again = cache.load(texts, spec).surface
    assert again is not first and torch.equal(again.ids, first.ids)
