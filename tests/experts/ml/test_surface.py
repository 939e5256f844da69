"""Surface features: stable hashed n-gram ids, bags that slice and join like the trunk's rows."""
from __future__ import annotations

import subprocess
import sys
import zlib

import pytest
import torch

from experts.ml.features import FeatureCache
from experts.ml.surface import (
    LATEST_SURFACE_VERSION,
    MAX_SURFACE_CHARS,
    SurfaceBag,
    shape_tokens,
    surface_ids,
)
from experts.ml.trunk import TrunkSet, TrunkSpec, surface_of


def test_ids_are_distinct_sorted_and_in_range():
    ids = surface_ids("ok lar, c u 2nite", 97, version=1)
    assert ids == sorted(set(ids))
    assert all(0 <= i < 97 for i in ids)
    # " ok lar, c u 2nite " has 19 characters: 18 bigrams ... 15 five-grams, plus 5 words;
    # distinct buckets can only be fewer (repeats and collisions)
    assert 0 < len(ids) <= 18 + 17 + 16 + 15 + 5


def _crc(grams, buckets):
    return sorted({zlib.crc32(g.encode("utf-8")) % buckets for g in grams})


def test_version_1_is_the_feature_set_routers_learned_before_versions():
    # " ok u " by hand: its 2- to 5-grams and its two words; nothing else
    grams = [" o", "ok", "k ", " u", "u ", " ok", "ok ", "k u", " u ", " ok ", "ok u", "k u ",
             " ok u", "ok u ", "w:ok", "w:u"]
    assert surface_ids("ok u", 1 << 18, version=1) == _crc(grams, 1 << 18)


def test_version_2_marks_the_ends_and_adds_the_shape_of_the_text():
    grams = ["\x02o", "ok", "k ", " u", "u\x03", "\x02ok", "ok ", "k u", " u\x03", "\x02ok ",
             "ok u", "k u\x03", "\x02ok u", "ok u\x03", "w:ok", "w:u",
             "s:len2", "s:nocaps", "s:enda"]
    assert surface_ids("ok u", 1 << 18, version=2) == _crc(grams, 1 << 18)
    assert surface_ids("ok u", 1 << 18) == surface_ids("ok u", 1 << 18, version=2)
    assert LATEST_SURFACE_VERSION == 2
    # a capital that opens the text is another gram than one inside it
    start, inside = surface_ids("Ok", 1 << 18), surface_ids("so Ok", 1 << 18)
    assert zlib.crc32(b"\x02O") % (1 << 18) in start
    assert zlib.crc32(b"\x02O") % (1 << 18) not in inside


@pytest.mark.parametrize(("text", "tokens"), [
    # SST: lower case, treebank-split punctuation and clitics
    ("it 's a charming , funny film .", ["s:len6", "s:nocaps", "s:sp,", "s:sp.", "s:clitic",
                                         "s:end."]),
    # TREC: a capital first, the question mark split off
    ("What is the capital of Peru ?", ["s:len6", "s:capstart", "s:sp?", "s:end?"]),
    # SMS: punctuation glued to the words, a digit, no final stop
    ("Hi. Call me at 5pm, ok?", ["s:len6", "s:capstart", "s:gl,", "s:gl.", "s:gl?",
                                 "s:digit", "s:end?"]),
    ("Ok lar...", ["s:len2", "s:capstart", "s:end."]),  # "..." is no glued full stop
    ("ok", ["s:len1", "s:nocaps", "s:enda"]),
    (", at last", ["s:len3", "s:nocaps", "s:sp,", "s:enda"]),  # split off at the start too
    ("don 't go n't", ["s:len4", "s:nocaps", "s:clitic", "s:enda"]),
    ("a b c d e f g h i j k l m n o p q r s t u v w x y z", ["s:len25", "s:nocaps", "s:enda"]),
    ("", ["s:len0", "s:nocaps", "s:end"]),
])
def test_shape_tokens_name_what_tells_the_sources_apart(text, tokens):
    assert shape_tokens(text) == tokens


def test_an_unknown_feature_version_is_refused():
    with pytest.raises(ValueError, match=r"surface feature version must be one of \(1, 2\), "
                                         "got 3"):
        surface_ids("x", 8, version=3)


def test_bags_keep_their_version_and_two_versions_do_not_join():
    bag = SurfaceBag.of_texts(["Ok lar", "a film"], 64, version=1)
    assert bag.version == 1 and bag.rows([1]).version == 1 and bag.to("cpu").version == 1
    assert SurfaceBag.concat([bag, bag]).version == 1
    with pytest.raises(ValueError, match="bucket counts or feature versions"):
        SurfaceBag.concat([bag, SurfaceBag.of_texts(["Ok lar"], 64, version=2)])


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
    # without a bag the feature version means nothing: one spec either way
    assert TrunkSpec.of(pooled=[0], surface_version=1) == TrunkSpec.of(pooled=[0])
    got = surface_of(["a", "b"], TrunkSpec.of(pooled=[0], surface=32))
    assert got is not None and got.buckets == 32 and len(got) == 2 and got.version == 2
    assert surface_of(["a"], TrunkSpec.of(pooled=[0], surface=32, surface_version=1)
                      ).version == 1


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
    old = cache.load(texts, TrunkSpec.of(pooled=[0], surface=64, surface_version=1)).surface
    assert old.version == 1  # the same texts and buckets, the other feature set: its own bag
    assert torch.equal(old.ids, SurfaceBag.of_texts(texts, 64, version=1).ids)
    assert first.version == 2 and not torch.equal(old.ids, first.ids)
    for i in range(5):  # older sets fall out; the bag is rebuilt, equal to the first
        cache.load([f"text {i}"], spec)
    again = cache.load(texts, spec).surface
    assert again is not first and torch.equal(again.ids, first.ids)
