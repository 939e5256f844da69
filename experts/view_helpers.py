"""Small read-side helpers the HTML views need on top of services and selectors."""
from __future__ import annotations

from experts.models import ExpertVersion
from experts.services import REVIEW_TRANSITIONS


def latest_visible(versions, *, user, maintainer: bool) -> ExpertVersion | None:
    seen = [v for v in versions if v.is_visible_to(user, maintainer=maintainer)]
    return max(seen, key=lambda v: v.number) if seen else None


def review_actions(version: ExpertVersion) -> list[tuple[str, str]]:
    """(action, label) pairs a maintainer can take on this version now (services' transitions)."""
    return [(action.value, action.label) for action, (sources, _) in REVIEW_TRANSITIONS.items()
            if version.status in sources]


def current_job_id(version: ExpertVersion) -> int | None:
    """The job a busy version waits on: training first, then validation."""
    params = version.training_params or {}
    if version.status == ExpertVersion.Status.TRAINING:
        return params.get("training_job")
    if version.is_busy:
        return params.get("validation_job")
    return None


def comparison(version: ExpertVersion, best: ExpertVersion | None) -> dict | None:
    """This version's private-test metrics against the domain's best approved version."""
    if best is None:
        return None
    rows = []
    for key, label in (("test_accuracy", "accuracy"), ("test_macro_f1", "macro-F1")):
        mine, theirs = version.metrics.get(key), best.metrics.get(key)
        delta = mine - theirs if mine is not None and theirs is not None else None
        rows.append({"metric": label, "this": mine, "best": theirs, "delta": delta})
    return {"best": best, "rows": rows}
