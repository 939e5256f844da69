"""Online predictions with the production gating model, loaded once per process.

Each request asks the database which version is in production (the answer is cached for
PRODUCTION_CHECK_S seconds); the model is reloaded only when that id changes. The web process
opens only the platform-written bundle of the version, never a contributor's upload.
"""
from __future__ import annotations

import logging
import threading
import time
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


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: _Loaded | None = None
        self.backbone = None
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
        from gating.ml.predictor import prepare_for_serving

        # One intra-op thread per process: on a busy 2-core box, OpenMP threads that spin
        # while another process holds a core turn a 15 ms request into 600 ms. Scale with
        # web workers (one per core) instead.
        torch.set_num_threads(int(settings.MOECOLLAB_PREDICT_THREADS))
        backbone = load_backbone(
            BackboneConfig(device=settings.MOECOLLAB_PREDICT_DEVICE)
        )
        dtype = prepare_for_serving(
            backbone, dtype=settings.MOECOLLAB_PREDICT_DTYPE)
        log.info("serving backbone in %s with %d thread(s)", dtype, torch.get_num_threads())
        _state.backbone = backbone
    return _state.backbone


def _load(version_id: int) -> _Loaded:
    from gating.ml.bundle import load_bundle
    from gating.ml.predictor import Predictor

    version = selectors.gating_version_get(pk=version_id)
    if version is None or not version.weights:
        raise DomainError("the production gating model has no weights file",
                          code="no_production_model", status_code=503)
    backbone = _backbone()
    started = time.perf_counter()
    model = load_bundle(version.weights.path, expected_fingerprint=backbone.fingerprint)
    names = {str(m.expert_version_id): m.expert_version.label for m in version.members_in_order()}
    predictor = Predictor(backbone, model, expert_labels=[names.get(k, k) for k in model.keys])
    log.info("loaded gating v%s for serving in %.2fs", version.number,
             time.perf_counter() - started)
    return _Loaded(version_id=version.pk, number=version.number, predictor=predictor)


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


def predict(texts) -> dict:
    """Predictions for a list of texts with the production model."""
    texts = check_texts(texts)
    loaded = current()
    started = time.perf_counter()
    with _state.lock:  # torch already uses every core; requests queue instead of thrashing
        results = loaded.predictor.predict(texts)
    return {"gating_version": loaded.number, "gating_version_id": loaded.version_id,
            "predictions": results, "ms": round((time.perf_counter() - started) * 1000, 2)}


def reset() -> None:
    """Forget the loaded model (tests)."""
    _state.loaded = None
    _state.checked_at = -1e9
