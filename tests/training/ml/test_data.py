from __future__ import annotations

import json
from collections import Counter

import pytest

from experts.ml.data import DomainDataError, load_domain_dir, subsample


def _write_domain(folder, *, train=None, dev=None, test=None, labels=("yes", "no")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "domain.json").write_text(json.dumps(
        {"name": "toy", "description": "a toy task", "labels": list(labels)}
    ))
    train = train if train is not None else [
        {"text": f"text {i}", "label": "yes" if i % 4 else "no"} for i in range(40)
    ]
    dev = dev if dev is not None else [{"text": "dev text", "label": "no"}]
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        if rows is not None:
            lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
            (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_it_loads_a_domain_folder(tmp_path):
    data = load_domain_dir(_write_domain(tmp_path / "toy", test=[{"text": "t", "label": "yes"}]))
    assert data.name == "toy" and data.labels == ["yes", "no"]
    assert len(data.train) == 40 and data.dev == [("dev text", "no")]
    assert data.test == [("t", "yes")]
    assert data.label_ids(data.dev) == [1]


def test_it_reads_an_eval_file_in_place_of_test(tmp_path):
    folder = _write_domain(tmp_path / "toy")
    private = tmp_path / "private.jsonl"
    private.write_text(json.dumps({"text": "secret", "label": "no"}) + "\n")
    assert load_domain_dir(folder).test == []
    assert load_domain_dir(folder, eval_file=private).test == [("secret", "no")]


@pytest.mark.parametrize(("train", "message"), [
    (['{"text": "ok", "label": "yes"}', "{broken"], r"train.jsonl: line 2: not valid JSON"),
    ([{"text": "ok", "label": "maybe"}], r"train.jsonl: line 1: unknown label 'maybe'"),
    ([{"text": "   ", "label": "yes"}], r"train.jsonl: line 1: empty or missing text"),
    ([["a", "yes"]], r"train.jsonl: line 1: expected an object"),
])
def test_it_names_the_file_and_line_of_bad_data(tmp_path, train, message):
    with pytest.raises(DomainDataError, match=message):
        load_domain_dir(_write_domain(tmp_path / "toy", train=train))


def test_it_requires_the_domain_files(tmp_path):
    with pytest.raises(DomainDataError, match="domain.json: not found"):
        load_domain_dir(tmp_path)
    folder = _write_domain(tmp_path / "toy")
    (folder / "dev.jsonl").unlink()
    with pytest.raises(DomainDataError, match="dev.jsonl: not found"):
        load_domain_dir(folder)


def test_it_subsamples_deterministically_and_keeps_label_shares(tmp_path):
    folder = _write_domain(tmp_path / "toy")
    a = load_domain_dir(folder, max_train=20, seed=1).train
    assert a == load_domain_dir(folder, max_train=20, seed=1).train
    assert a != load_domain_dir(folder, max_train=20, seed=2).train
    assert Counter(label for _, label in a) == {"yes": 15, "no": 5}
    rare = [("r", "rare")] + [(str(i), "common") for i in range(99)]
    assert ("r", "rare") in subsample(rare, 10, seed=0)  # every label keeps at least one
    assert len(subsample(rare, 10, seed=0)) == 10
