"""One client's large batches do not starve the others: the model is handed out per chunk,
round-robin over clients, and answering chunk by chunk changes no prediction.

No timings are asserted here (the shared machine makes them flaky); the measured latencies
live in docs/performance.md.
"""
from __future__ import annotations

import random
import threading
import time

import pytest

from gating import serving
from tests.experts.ml.tiny import sample_texts

pytestmark = pytest.mark.usefixtures("fresh_serving")


def _wait_until(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class _Backbone:
    def tokenize(self, texts):
        return [[0] * len(t) for t in texts]


class _Predictor:
    """Records which texts each forward pass got; the first pass can be held open."""

    def __init__(self, batch_size: int):
        self.backbone = _Backbone()
        self.batch_size = batch_size
        self.top_k = 1  # what the answer reports as the experts per text
        self.mix = "top_k"  # ... and how they were mixed
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def predict(self, texts, *, probabilities=False, top_k=None):
        self.calls.append(list(texts))
        self.entered.set()
        self.release.wait(10)
        return [{"label": t} for t in texts]


@pytest.fixture
def fake_model(monkeypatch):
    predictor = _Predictor(batch_size=4)
    loaded = serving._Loaded(version_id=1, number=1, predictor=predictor)
    monkeypatch.setattr(serving, "current", lambda: loaded)
    return predictor


def _run(results: dict, name: str, texts: list[str], client: str) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: results.__setitem__(name, serving.predict(texts, client=client)))
    thread.start()
    return thread


def test_it_lets_a_small_request_in_between_the_chunks_of_a_large_batch(db, fake_model):
    heavy = [f"heavy text {i:02d}" for i in range(16)]  # 4 chunks of 4
    results: dict = {}
    fake_model.release.clear()
    first = _run(results, "heavy", heavy, "addr:198.51.100.1")
    assert fake_model.entered.wait(10)  # the heavy batch holds the model for its first chunk
    second = _run(results, "heavy-2", heavy, "addr:198.51.100.1")
    light = _run(results, "light", ["one short text"], "addr:203.0.113.5")
    _wait_until(lambda: serving._state.compute.waiting() == 2, "both requests to queue")
    fake_model.release.set()
    for thread in (first, second, light):
        thread.join(10)

    light_turn = fake_model.calls.index(["one short text"])
    assert light_turn == 1, "the light call runs right after the chunk in progress"
    assert len(fake_model.calls) == 1 + 4 + 4
    assert [p["label"] for p in results["heavy"]["predictions"]] == heavy
    assert [p["label"] for p in results["heavy-2"]["predictions"]] == heavy
    assert results["light"]["predictions"] == [{"label": "one short text"}]


def test_it_hands_the_model_out_round_robin_over_clients():
    lock = serving.FairLock()
    order: list[str] = []
    threads = []
    with lock.hold("a"):  # a holds it while everyone queues
        for name, client in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c"),
                             ("b2", "b")]:
            def take(name=name, client=client):
                with lock.hold(client):
                    order.append(name)

            thread = threading.Thread(target=take)
            thread.start()
            threads.append(thread)
            queued = len(threads)
            _wait_until(lambda n=queued: lock.waiting() == n, f"{name} to queue")
    for thread in threads:
        thread.join(10)
    # a just had its turn, so a's waiting requests come after b's and c's first ones
    assert order == ["b1", "c1", "a1", "b2", "a2", "a3"]
    assert lock.waiting() == 0


def test_it_answers_chunk_by_chunk_exactly_as_one_call_over_all_texts(db, tiny_trained_gating,
                                                                       monkeypatch):
    from gating.ml.predictor import Predictor

    backbone, model = tiny_trained_gating
    texts = sample_texts(23, seed=3)
    random.Random(0).shuffle(texts)
    whole = Predictor(backbone, model, batch_size=64).predict(texts)
    chunked = Predictor(backbone, model, batch_size=5)
    one_call = chunked.predict(texts)
    monkeypatch.setattr(serving, "current",
                        lambda: serving._Loaded(version_id=1, number=1, predictor=chunked))
    served = serving.predict(texts, client="addr:192.0.2.1")["predictions"]
    assert served == one_call  # identical numbers, not only the same labels
    assert [(p["domain"], p["label"]) for p in served] == [
        (p["domain"], p["label"]) for p in whole]


@pytest.fixture(scope="module")
def tiny_trained_gating(tiny_backbone, tmp_path_factory):
    """Two head experts and a router on the tiny backbone: enough to route and label."""
    from experts.ml.data import DomainData
    from experts.ml.features import FeatureCache
    from gating.ml.training import GatingTrainConfig, train_gating
    from training.ml.expert_train import ExpertTrainConfig, train_expert

    rng = random.Random(0)
    topics = {"sport": ["goal", "match", "team", "game"], "money": ["stock", "market", "bank"]}

    def rows(words, n):
        out = []
        for _ in range(n):
            verb = rng.choice(["won", "lost"])
            out.append((" ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
                        + f" {verb}", verb))
        return out

    domains = [DomainData(name=name, description="", labels=["won", "lost"],
                          train=rows(words, 24), dev=rows(words, 8), test=rows(words, 8))
               for name, words in sorted(topics.items())]
    cache = FeatureCache(tmp_path_factory.mktemp("cache"), tiny_backbone)
    experts = [train_expert(ExpertTrainConfig(kind="head", epochs=1, device="cpu"),
                            backbone=tiny_backbone, cache=cache, domain=d).expert
               for d in domains]
    result = train_gating(GatingTrainConfig(epochs=1, device="cpu"), experts=experts,
                          keys=["m1", "s1"], domains=domains, cache=cache)
    return tiny_backbone, result.model
