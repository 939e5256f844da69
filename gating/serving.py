"""Online predictions with the production gating model, loaded once per process.

Each request asks the database which version is in production (the answer is cached for
PRODUCTION_CHECK_S seconds); the model is reloaded only when that id changes. The web process
opens only the platform-written bundle of the version, never a contributor's upload.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings

from gating import selectors
from moecollab_site.errors import DomainError

log = logging.getLogger(__name__)

PRODUCTION_CHECK_S = 1.5


def predict_max_texts() -> int:
    return int(settings.MOECOLLAB_PREDICT_MAX_TEXTS)


def predict_max_chars() -> int:
    return int(settings.MOECOLLAB_PREDICT_MAX_CHARS)


@dataclass
class _Loaded:
    version_id: int
    number: int
    predictor: object  # gating.ml.predictor.Predictor
    backend: str = "torch-float32"  # the backbone forward it runs (experts.ml.inference)


class FairLock:
    """A mutex handed to the waiting client that had its last turn longest ago (first come
    first served within one client).

    predict() holds it per chunk of a batch, not per request: a client sending many large
    batches takes one turn like everyone else, so another client's one-text call waits for at
    most one chunk of each other waiting client instead of for every batch queued before it.
    """

    MAX_REMEMBERED = 1024  # clients whose last turn is kept; the rest count as new

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._waiting: dict[str, deque[int]] = {}  # client -> its tickets, oldest first
        self._last_turn: dict[str, int] = {}
        self._tickets = itertools.count()
        self._turns = itertools.count()

    def waiting(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._waiting.values())

    @contextmanager
    def hold(self, client: str):
        with self._cond:
            ticket = next(self._tickets)
            self._waiting.setdefault(client, deque()).append(ticket)
            while self._held or self._next() != ticket:
                self._cond.wait()
            self._held = True
            queue = self._waiting[client]
            queue.popleft()
            if not queue:
                del self._waiting[client]
            self._last_turn[client] = next(self._turns)
            if len(self._last_turn) > self.MAX_REMEMBERED:
                self._last_turn = {c: t for c, t in self._last_turn.items()
                                   if c in self._waiting or c == client}
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def _next(self) -> int | None:
        if not self._waiting:
            return None
        client = min(self._waiting,
                     key=lambda c: (self._last_turn.get(c, -1), self._waiting[c][0]))
        return self._waiting[client][0]


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # loading a model
        self.compute = FairLock()  # running one (torch already uses the cores it is given)
        self.loaded: _Loaded | None = None
        self.backbone = None
        self.trunks: dict = {}  # backend name -> opened trunk over the backbone
        self.checked_at = -1e9
        self.production_id: int | None = None


_state = _State()


def _production_id() -> int | None:
    now = time.monotonic()
    if now - _state.checked_at >= PRODUCTION_CHECK_S:
        _state.production_id = selectors.production_version_id()
        _state.checked_at = now
    return _state.production_id


def _backbone():
    if _state.backbone is None:
        import torch

        from experts.ml.backbone import BackboneConfig, load_backbone

        # One intra-op thread per process: on a busy 2-core box, OpenMP threads that spin
        # while another process holds a core turn a 15 ms request into 600 ms. Scale with
        # web workers (one per core) instead.
        torch.set_num_threads(int(settings.MOECOLLAB_PREDICT_THREADS))
        backbone = load_backbone(
            BackboneConfig(device=settings.MOECOLLAB_PREDICT_DEVICE)
        )
        log.info("serving backbone loaded with %d thread(s)", torch.get_num_threads())
        _state.backbone = backbone
    return _state.backbone


def _trunk(report: dict):
    """(trunk, backend name): the configured serving backend, or for "auto" the fastest one
    that passed the accuracy gate in this version's evaluation; torch-float32 when the chosen
    one cannot run here (onnxruntime missing, export failed)."""
    from experts.ml.inference import BackendUnavailable, open_backend
    from gating.ml.backend_gate import pick_backend

    backbone = _backbone()
    name = settings.MOECOLLAB_PREDICT_BACKEND
    if name == "auto":
        name = pick_backend(report.get("serving_backend"))
    if name not in _state.trunks:
        try:
            _state.trunks[name] = open_backend(
                backbone, name, cache_dir=settings.MOECOLLAB_FEATURE_CACHE_DIR,
                threads=int(settings.MOECOLLAB_PREDICT_THREADS))
        except BackendUnavailable as exc:
            log.warning("serving backend %s unavailable, using torch-float32: %s", name, exc)
            name = "torch-float32"
            _state.trunks[name] = backbone
    log.info("serving with the %s backend", name)
    return _state.trunks[name], name


def _load(version_id: int) -> _Loaded:
    from gating.ml.bundle import load_bundle
    from gating.ml.predictor import Predictor

    version = selectors.gating_version_get(pk=version_id)
    if version is None or not version.weights:
        raise DomainError("the production gating model has no weights file",
                          code="no_production_model", status_code=503)
    backbone = _backbone()
    trunk, backend = _trunk(version.report or {})
    started = time.perf_counter()
    model = load_bundle(version.weights.path, expected_fingerprint=backbone.fingerprint,
                        backbone=backbone)
    names = {str(m.expert_version_id): m.expert_version.label for m in version.members_in_order()}
    predictor = Predictor(trunk, model, expert_labels=[names.get(k, k) for k in model.keys],
                          batch_size=int(settings.MOECOLLAB_PREDICT_CHUNK))
    log.info("loaded gating v%s for serving in %.2fs", version.number,
             time.perf_counter() - started)
    return _Loaded(version_id=version.pk, number=version.number, predictor=predictor,
                   backend=backend)


def current() -> _Loaded:
    """The loaded production model, (re)loading it when production changed."""
    production = _production_id()
    if production is None:
        raise DomainError("no gating model is in production yet; a maintainer has to train, "
                          "evaluate and promote one first", code="no_production_model",
                          status_code=503)
    loaded = _state.loaded
    if loaded is not None and loaded.version_id == production:
        return loaded
    with _state.lock:
        if _state.loaded is None or _state.loaded.version_id != production:
            _state.loaded = _load(production)
        return _state.loaded


def check_texts(texts) -> list[str]:
    """The texts of a predict request, or a DomainError naming what is wrong."""
    limit, max_chars = predict_max_texts(), predict_max_chars()
    if not isinstance(texts, list):
        raise DomainError('"texts" must be a list of strings', code="invalid_texts")
    if not texts:
        raise DomainError('"texts" is empty; send between 1 and '
                          f"{limit} texts", code="empty_texts")
    if len(texts) > limit:
        raise DomainError(f'"texts" has {len(texts)} items; at most {limit} per call',
                          code="too_many_texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DomainError(f"texts[{i}] must be a non-empty string", code="invalid_texts")
        if len(text) > max_chars:
            raise DomainError(f"texts[{i}] has {len(text)} characters; at most {max_chars}",
                              code="text_too_long")
    return texts


def check_top_k(top_k) -> int | None:
    """A request's top_k (None: the model's own); its upper bound is the loaded model's number
    of experts, which predict() checks."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise DomainError('"top_k" must be a whole number of experts, at least 1 (or leave it '
                          "out to use the model's own)", code="invalid_top_k")
    return top_k


def predict(texts, *, client: str = "", probabilities: bool = False,
            top_k: int | None = None) -> dict:
    """Predictions for a list of texts with the production model; `client` (the throttles'
    client key) decides whose turn it is when several requests wait for the model;
    `probabilities` adds each label's probability (the playground shows them); `top_k` sends
    each text to that many experts instead of the model's own mix and top_k."""
    texts = check_texts(texts)
    top_k = check_top_k(top_k)
    loaded = current()
    predictor = loaded.predictor
    route: dict = {}  # no top_k: the model's own, as every call before top_k existed
    if top_k is not None:
        n_experts = predictor.model.moe.n_experts
        if top_k > n_experts:
            raise DomainError(f'"top_k" is {top_k}, but the production model '
                              f"(v{loaded.number}) has {n_experts} experts; send between 1 "
                              f"and {n_experts}", code="invalid_top_k")
        route = {"top_k": top_k}
    started = time.perf_counter()
    results: list[dict | None] = [None] * len(texts)
    size = predictor.batch_size
    lengths: list[int] = []
    for start in range(0, len(texts), size):  # 64 long texts take as long as a chunk's pass
        with _state.compute.hold(client):  # the tokenizer is not safe to share between threads
            lengths += [len(ids) for ids in predictor.backbone.tokenize(texts[start:start + size])]
    # The chunks are exactly the predictor's own batches (longest first, batch_size each), so
    # answering chunk by chunk gives the very numbers one call over all texts would.
    order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        with _state.compute.hold(client):
            batch = [texts[i] for i in chunk]
            answers = predictor.predict(batch, probabilities=probabilities, **route)
        for i, answer in zip(chunk, answers, strict=True):
            results[i] = answer
    return {"gating_version": loaded.number, "gating_version_id": loaded.version_id,
            "top_k": top_k or predictor.top_k, "mix": "top_k" if top_k else predictor.mix,
            "predictions": results,
            "ms": round((time.perf_counter() - started) * 1000, 2)}


def reset() -> None:
    """Forget the loaded model (tests)."""
    _state.loaded = None
    _state.checked_at = -1e9
    _state.trunks = {}
