"""Gating pages: versions and dashboards, training/promotion forms, the predict playground."""
from __future__ import annotations

import math
from types import SimpleNamespace

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.throttling import ScopedRateThrottle

from experts.models import Domain
from experts.selectors import expert_versions_approved
from gating import dashboard, selectors, services, serving
from gating.dashboard import dashboard_charts
from gating.ml.mixes import MIXES
from gating.models import GatingVersion
from moecollab_site.errors import DomainError
from moecollab_site.roles import is_maintainer
from moecollab_site.throttling import (
    PREDICT_WORK,
    client_key,
    predict_budget_message,
    predict_work,
)

PARAM_FIELDS = ("top_k", "temperature", "lambda_bal", "lambda_z", "lambda_h", "epochs",
                "patience", "seed")


def index(request):
    versions = list(selectors.gating_version_list()[:50])
    production = selectors.production_promotion()
    context = {
        "versions": versions,
        "production": production,
        "history": selectors.promotion_history(limit=20),
        "jobs": selectors.jobs_overview(user=request.user),
        "approved": list(expert_versions_approved()) if is_maintainer(request.user) else [],
        "param_fields": PARAM_FIELDS,
        "mixes": MIXES,
    }
    return render(request, "gating/index.html", context)


def detail(request, pk: int):
    version = selectors.gating_version_get(pk=pk)
    if version is None:
        raise Http404("no such gating version")
    previous = selectors.previous_production(version=version)
    report = version.report or {}
    names = dashboard.expert_labels(version)
    context = {
        "version": version,
        "members": version.members_in_order(),
        "previous": previous,
        "is_production": selectors.production_version_id() == version.pk,
        "charts": dashboard_charts(version, previous),
        "report": report,
        "groups": dashboard.domain_groups(version),
        "loads_identical": dashboard.loads_identical(report),
        "compute_words": dashboard.compute_words(report.get("compute")),
        "compute_share": dashboard.compute_share(report.get("compute")),
        "hyperparameters": dashboard.hyperparameters(version),
        "dead": [names.get(k, k) for k in (report.get("routing") or {}).get("dead_experts", [])],
        "comparison": selectors.promotion_comparison(version=version),
    }
    return render(request, "gating/detail.html", context)


def _int_list(values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise DomainError("expert versions must be given by their numeric ids") from None


def _form_params(post) -> dict:
    params = {}
    if mix := post.get("mix", "").strip():  # blank: the default; the service names a bad one
        params["mix"] = mix
    for name in PARAM_FIELDS:
        raw = post.get(name, "").strip()
        if raw:
            try:
                params[name] = int(raw) if raw.lstrip("-").isdigit() else float(raw)
            except ValueError:
                raise DomainError(f"{name} must be a number, got {raw!r}") from None
    return params


@require_POST
def train(request):
    if not is_maintainer(request.user):
        raise PermissionDenied("only maintainers can train gating models")
    try:
        chosen = request.POST.getlist("expert_version_ids")
        job = services.gating_train_start(
            user=request.user, expert_version_ids=_int_list(chosen) if chosen else None,
            params=_form_params(request.POST),
        )
    except DomainError as exc:
        if exc.link:  # an identical gating model exists: show it, saying so
            messages.info(request, exc.message)
            return redirect(exc.link)
        messages.error(request, exc.message)
        return redirect("gating-index")
    version = GatingVersion.objects.get(pk=job.params["gating_version_id"])
    messages.success(request, f"Training gating v{version.number} (job {job.pk}) queued.")
    return redirect("job-detail", pk=job.pk)


@require_POST
def promote(request, pk: int):
    if not is_maintainer(request.user):
        raise PermissionDenied("only maintainers can promote gating models")
    version = selectors.gating_version_get(pk=pk)
    if version is None:
        raise Http404("no such gating version")
    try:
        services.gating_promote(version=version, user=request.user,
                                confirm_worse=request.POST.get("confirm_worse") == "on")
        messages.success(request, f"gating v{version.number} is now in production.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("gating-detail", pk=pk)


@require_POST
def rollback(request):
    if not is_maintainer(request.user):
        raise PermissionDenied("only maintainers can roll back production")
    try:
        restored = services.gating_rollback(user=request.user)
        now = f"gating v{restored.version.number}" if restored else "no gating model"
        messages.success(request, f"Rolled back; production is now {now}.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("gating-index")


def _predict_wait(request) -> int | None:
    """Seconds this client must wait before predicting again, else None. The playground counts
    against the predict API's budget (same scope, same key), so it is no way around it."""
    throttle = ScopedRateThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope="predict")):
        return None
    return max(1, math.ceil(throttle.wait() or 1))


def _throttled(request, context: dict, wait: int, message: str):
    context["error"] = f"{message}; try again in {wait} seconds."
    response = render(request, "gating/playground.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


PLAYGROUND_BARS = 6  # label probabilities shown per text; the rest share one "other" bar


def _playground_domains(production: GatingVersion | None) -> list[Domain]:
    """The domains the production model answers for (all domains before there is one), with
    the examples and label help their maintainers wrote."""
    domains = Domain.objects.order_by("name")
    if production is not None and production.label_space:
        names = {name.partition(":")[0] for name in production.label_space}
        domains = domains.filter(name__in=names)
    return list(domains)


def _probability_bars(prediction: dict, domains: dict[str, Domain]) -> list[dict]:
    """The most likely `domain:label`s of one prediction, most likely first, with plain words
    for each label and a last bar for what the others add up to."""
    ranked = sorted(prediction.get("probabilities", {}).items(), key=lambda kv: -kv[1])
    bars = []
    for name, p in ranked[:PLAYGROUND_BARS]:
        domain, _, label = name.partition(":")
        known = domains.get(domain)
        words = known.label_explained(label) if known else ""
        # "location: the answer is a place" -> "location", short enough to sit beside a bar
        short = words.partition(":")[0].strip() if ":" in words else words
        bars.append({"domain": domain, "label": label, "p": p, "percent": round(100 * p, 1),
                     "help": words, "short": short if len(short) <= 24 else ""})
    rest = sum(p for _, p in ranked[PLAYGROUND_BARS:])
    if rest >= 0.0005:
        bars.append({"domain": "", "label": f"{len(ranked) - PLAYGROUND_BARS} other labels",
                     "p": rest, "percent": round(100 * rest, 1), "help": ""})
    return bars


def playground(request):
    """Type texts (one per line) or pick an example and see the production model's answer,
    with each label's probability; no JavaScript needed."""
    production = selectors.production_version()
    domains = _playground_domains(production)
    context = {"text": "", "result": None, "error": None,
               "max_texts": serving.predict_max_texts(),
               "production": production, "domains": domains}
    if request.method == "POST":
        text = request.POST.get("texts", "")
        context["text"] = text
        if (wait := _predict_wait(request)) is not None:
            return _throttled(request, context, wait, "Too many predictions")
        texts = [line for line in text.splitlines() if line.strip()]
        try:
            serving.check_texts(texts)
            if (wait := PREDICT_WORK.charge(request, predict_work(texts))) is not None:
                return _throttled(request, context, wait, predict_budget_message().capitalize())
            context["result"] = serving.predict(texts, client=client_key(request),
                                                probabilities=True)
            by_name = {d.name: d for d in domains}
            context["rows"] = [
                {"text": t, "p": p, "bars": _probability_bars(p, by_name),
                 "help": by_name[p["domain"]].label_explained(p["label"])
                 if p["domain"] in by_name else ""}
                for t, p in zip(texts, context["result"]["predictions"], strict=True)]
        except DomainError as exc:
            context["error"] = exc.message
            status = exc.status_code
            return render(request, "gating/playground.html", context, status=status)
    return render(request, "gating/playground.html", context)
