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

from experts.selectors import expert_versions_approved
from gating import charts, selectors, services, serving
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
    }
    return render(request, "gating/index.html", context)


def _labels(version: GatingVersion) -> dict[str, str]:
    return {str(m.expert_version_id): m.expert_version.label for m in version.members_in_order()}


def dashboard_charts(version: GatingVersion, previous: GatingVersion | None) -> dict:
    """Every chart of a version's dashboard, as inline SVG; missing data leaves a chart out."""
    out: dict = {}
    report = version.report or {}
    names = _labels(version)
    routing = report.get("routing") or {}
    unreg = (report.get("unregularized") or {}).get("routing") or {}
    keys = list(names)
    labels = [names[k] for k in keys]
    if routing.get("load"):
        series = {"regularised": [routing["load"].get(k) for k in keys]}
        if unreg.get("load"):
            series["unregularised"] = [unreg["load"].get(k) for k in keys]
        out["load"] = charts.grouped_bars(
            labels, series, title="Load per expert vs the even share",
            reference=1 / max(len(keys), 1), reference_label="even share")
    if routing:
        metrics = ["normalized_entropy", "utilization", "accuracy"]
        series = {"regularised": [routing.get(m) for m in metrics]}
        if unreg:
            series["unregularised"] = [unreg.get(m) for m in metrics]
        out["health"] = charts.grouped_bars(
            ["norm. entropy", "utilisation", "routing accuracy"], series, ymax=1.0,
            title="Routing health: regularised vs unregularised router")
    if report.get("domains"):
        domains = list(report["domains"])
        series = {f"v{version.number}": [report["domains"][d]["accuracy"] for d in domains]}
        prev_domains = (previous.report or {}).get("domains") if previous else None
        if prev_domains:
            series[f"v{previous.number} (production before)"] = [
                (prev_domains.get(d) or {}).get("accuracy") for d in domains]
        out["accuracy"] = charts.grouped_bars(domains, series, ymax=1.0,
                                              title="Test accuracy per domain")
    matrix = report.get("routing_matrix")
    if matrix:
        rows = list(matrix)
        out["heatmap"] = charts.heatmap(
            rows, labels, [[matrix[r].get(k, 0.0) for k in keys] for r in rows],
            title="Routing: domain × expert")
    curves = version.training_curves or {}
    reg = curves.get("regularized") or []
    if reg:
        series = {
            "train loss": [(r["epoch"], r.get("train_total")) for r in reg],
            "train NLL": [(r["epoch"], r.get("train_nll")) for r in reg],
            "dev NLL": [(r["epoch"], r.get("dev_nll")) for r in reg],
        }
        unreg_curve = curves.get("unregularized") or []
        if unreg_curve:
            series["unregularised train loss"] = [(r["epoch"], r.get("train_total"))
                                                  for r in unreg_curve]
        out["loss"] = charts.line_chart(series, title="Router training loss")
        acc = {"dev accuracy": [(r["epoch"], r.get("dev_accuracy")) for r in reg]}
        if unreg_curve:
            acc["unregularised dev accuracy"] = [(r["epoch"], r.get("dev_accuracy"))
                                                 for r in unreg_curve]
        out["dev_accuracy"] = charts.line_chart(acc, title="Router dev accuracy")
    return out


def detail(request, pk: int):
    version = selectors.gating_version_get(pk=pk)
    if version is None:
        raise Http404("no such gating version")
    previous = selectors.previous_production(version=version)
    report = version.report or {}
    names = _labels(version)
    credit = [
        {"key": k, "label": names.get(k, k), "credit": v,
         "without": (report.get("accuracy_without") or {}).get(k),
         "shapley": (report.get("shapley") or {}).get(k),
         "load_unregularized": (((report.get("unregularized") or {}).get("routing") or {})
                                .get("load") or {}).get(k),
         "shapley_ci95": (report.get("shapley_ci95") or {}).get(k),
         "load": ((report.get("routing") or {}).get("load") or {}).get(k)}
        for k, v in (report.get("credit") or {}).items()
    ]
    context = {
        "version": version,
        "members": version.members_in_order(),
        "previous": previous,
        "is_production": selectors.production_version_id() == version.pk,
        "charts": dashboard_charts(version, previous),
        "report": report,
        "credit": credit,
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


def playground(request):
    """Type texts (one per line) and see the production model's answer; no JavaScript needed."""
    context = {"text": "", "result": None, "error": None,
               "max_texts": serving.predict_max_texts(),
               "production": selectors.production_version()}
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
            context["result"] = serving.predict(texts, client=client_key(request))
            context["rows"] = list(zip(texts, context["result"]["predictions"], strict=True))
        except DomainError as exc:
            context["error"] = exc.message
            status = exc.status_code
            return render(request, "gating/playground.html", context, status=status)
    return render(request, "gating/playground.html", context)
