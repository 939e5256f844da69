"""What a version's dashboard shows, built from its evaluation report and training curves:
the charts with a sentence each, compute in words, experts grouped by the domain they compete
for, and the hyperparameters as rows. Reads only; no writes, no torch."""
from __future__ import annotations

from gating import charts
from gating.models import GatingVersion

# What each hyperparameter does, for the table on the dashboard (gating.ml.training's config).
PARAM_MEANINGS = {
    "top_k": "experts each input is sent to (when mix is top_k)",
    "mix": "which experts answer an input: top_k (its top_k), domain (every expert of its most "
           "probable domain, weighted) or dense (every expert)",
    "temperature": "router softmax temperature (above 1 spreads inputs, below 1 sharpens)",
    "noise_std": "scale of the router's exploration noise in training (0 = off)",
    "mlp_hidden": "hidden width of the router (0 = a linear router)",
    "lambda_bal": "weight of the load-balancing loss (spreads inputs over experts)",
    "lambda_z": "weight of the router z-loss (keeps router logits small)",
    "lambda_h": "weight of the entropy term (confident per input, balanced overall)",
    "epochs": "most passes over the training data",
    "lr": "learning rate",
    "batch_size": "inputs per training step",
    "patience": "epochs without a better dev score before training stops",
    "seed": "random seed of sampling, initialisation and noise",
    "samples_per_domain": "router inputs drawn from each domain per epoch",
    "max_train_per_domain": "cap on each domain's training rows",
    "compare_unregularized": "also train a router without the regularisers, for comparison",
    "router_layers": "backbone layers whose pooled states the router reads",
    "router_surface_buckets": "hash buckets of the text's character n-grams and words the router "
                              "also reads (0 = none)",
    "dev_fraction": "share of training rows held out when a domain has no dev split",
    "device": "where the router was trained",
}
SHOWN_PARAMS = ("mix", "top_k", "temperature", "lambda_bal", "lambda_z", "lambda_h", "epochs",
                "patience", "seed")


def expert_labels(version: GatingVersion) -> dict[str, str]:
    """Expert key (the expert version id, as the report writes it) -> its label."""
    return {str(m.expert_version_id): m.expert_version.label for m in version.members_in_order()}


def flops_words(flops: float) -> str:
    for scale, unit in ((1e9, "GFLOPs"), (1e6, "MFLOPs"), (1e3, "kFLOPs")):
        if flops >= scale:
            return f"{flops / scale:.1f} {unit}"
    return f"{flops:.0f} FLOPs"


def compute_share(compute: dict | None) -> float | None:
    """Routed FLOPs per input as a percentage of the dense model's."""
    dense = (compute or {}).get("dense_flops_per_input")
    routed = (compute or {}).get("routed_flops_per_input")
    return 100 * routed / dense if dense and routed is not None else None


def compute_words(compute: dict | None) -> str | None:
    """The compute measurement as a sentence a reader can act on."""
    share = compute_share(compute)
    if share is None:
        return None
    dense, routed = compute["dense_flops_per_input"], compute["routed_flops_per_input"]
    text = (f"Routing uses {share:.1f} % of the dense model's FLOPs "
            f"({flops_words(routed)} vs {flops_words(dense)} per input)")
    trunk = compute.get("trunk_flops_per_input")
    if trunk:
        text += (f"; the shared backbone, which every input runs, costs {flops_words(trunk)} "
                 f"of that, so routing can save at most the experts' share, "
                 f"{flops_words(max(dense - trunk, 0.0))} per input")
    return text + "."


def _spread(loads: list[float]) -> str:
    return f"{min(loads):.2f} to {max(loads):.2f}"


def dashboard_charts(version: GatingVersion, previous: GatingVersion | None) -> dict:
    """Every chart of a version's dashboard (charts.Chart); missing data leaves a chart out."""
    out: dict = {}
    report = version.report or {}
    names = expert_labels(version)
    routing = report.get("routing") or {}
    unreg = (report.get("unregularized") or {}).get("routing") or {}
    keys = list(names)
    labels = [names[k] for k in keys]
    if routing.get("load"):
        even = 1 / max(len(keys), 1)
        series = {"regularised": [routing["load"].get(k) for k in keys]}
        caption = (f"Share of all dispatches each expert receives; the dashed line is the even "
                   f"share (1/{len(keys)} = {even:.2f}). The regularised router's loads run "
                   f"from {_spread([v or 0.0 for v in series['regularised']])}")
        if unreg.get("load"):
            series["unregularised"] = [unreg["load"].get(k) for k in keys]
            caption += (f"; the router trained without the regularisers gives "
                        f"{_spread([v or 0.0 for v in series['unregularised']])}")
        out["load"] = charts.hbars(
            labels, series, title="Load per expert vs the even share", caption=caption + ".",
            reference=even, reference_label="even share")
    if routing:
        metrics = ["normalized_entropy", "utilization", "accuracy"]
        series = {"regularised": [routing.get(m) for m in metrics]}
        if unreg:
            series["unregularised"] = [unreg.get(m) for m in metrics]
        out["health"] = charts.hbars(
            ["normalised entropy", "utilisation", "routing accuracy"], series, xmax=1.0,
            title="Routing health: with and without the regularisers",
            caption="Normalised entropy: how unsure the router is per input (0 = certain). "
                    "Utilisation: 1.0 when every expert gets an even share, 1/N on collapse. "
                    "Routing accuracy: share of inputs whose first expert serves their domain.")
    if report.get("domains"):
        domains = list(report["domains"])
        name = f"v{version.number}"
        series = {name: [report["domains"][d]["accuracy"] for d in domains]}
        intervals = {name: [report["domains"][d].get("interval") for d in domains]}
        caption = (f"Test accuracy of v{version.number} on each domain's evaluation rows; the "
                   "whisker is the 95 % Wilson interval")
        prev_domains = (previous.report or {}).get("domains") if previous else None
        if prev_domains:
            before = f"v{previous.number} (production before)"
            series[before] = [(prev_domains.get(d) or {}).get("accuracy") for d in domains]
            intervals[before] = [(prev_domains.get(d) or {}).get("interval") for d in domains]
            caption += f", beside v{previous.number}, the production version before it"
        out["accuracy"] = charts.hbars(domains, series, xmax=1.0, caption=caption + ".",
                                       intervals=intervals, title="Test accuracy per domain")
    matrix = report.get("routing_matrix")
    if matrix:
        domains = list(matrix)
        out["heatmap"] = charts.heatmap(
            labels, domains, [[matrix[d].get(k, 0.0) for d in domains] for k in keys],
            title="Routing: expert × input domain",
            caption="Each column is one input domain; a cell is the share of that domain's "
                    "dispatches that go to the expert in its row (columns sum to 1). A dark "
                    "cell on the expert that serves the domain is what good routing looks like.")
    out.update(_curve_charts(version.training_curves or {}))
    return out


def _curve_charts(curves: dict) -> dict:
    out: dict = {}
    reg = curves.get("regularized") or []
    if not reg:
        return out
    unreg = curves.get("unregularized") or []
    series = {
        "train loss (all terms)": [(r["epoch"], r.get("train_total")) for r in reg],
        "train NLL": [(r["epoch"], r.get("train_nll")) for r in reg],
        "dev NLL": [(r["epoch"], r.get("dev_nll")) for r in reg],
    }
    if unreg:
        series["unregularised train loss"] = [(r["epoch"], r.get("train_total")) for r in unreg]
    out["loss"] = charts.lines(
        series, title="Router training loss per epoch",
        caption="The loss the router minimised (NLL plus the balance, z and entropy terms), "
                "its NLL part alone on the training and dev rows, and the loss of the router "
                "trained without the regularisers. Dev NLL rising while train NLL falls means "
                "overfitting.")
    acc = {"dev accuracy": [(r["epoch"], r.get("dev_accuracy")) for r in reg]}
    if unreg:
        acc["unregularised dev accuracy"] = [(r["epoch"], r.get("dev_accuracy")) for r in unreg]
    out["dev_accuracy"] = charts.lines(
        acc, title="Router dev accuracy per epoch",
        caption="Accuracy of the mixture on the dev rows after each epoch, with and without "
                "the regularisers; training keeps the best epoch.")
    return out


def domain_groups(version: GatingVersion) -> list[dict]:
    """Experts grouped by the domain they serve: who competes for a domain's inputs, with load
    (with and without the regularisers), the share of the domain's inputs each gets, and
    credit (Shapley with its interval, leave-one-out)."""
    report = version.report or {}
    routing = report.get("routing") or {}
    load = routing.get("load") or {}
    unreg_load = (((report.get("unregularized") or {}).get("routing") or {}).get("load")) or {}
    matrix = report.get("routing_matrix") or {}
    shapley, ci95 = report.get("shapley") or {}, report.get("shapley_ci95") or {}
    loo, without = report.get("credit") or {}, report.get("accuracy_without") or {}
    dead = set(routing.get("dead_experts") or [])
    groups: dict[str, list[dict]] = {}
    for m in version.members_in_order():
        key = str(m.expert_version_id)
        domain = m.expert_version.expert.domain.name
        interval = ci95.get(key)
        groups.setdefault(domain, []).append({
            "key": key, "id": m.expert_version_id, "label": m.expert_version.label,
            "kind": m.expert_version.kind, "load": load.get(key),
            "load_unregularized": unreg_load.get(key),
            "domain_share": (matrix.get(domain) or {}).get(key),
            "shapley": shapley.get(key),
            # An exact Shapley value has a zero-width interval: say "exact" instead.
            "shapley_ci95": interval if interval and interval[0] != interval[1] else None,
            "loo": loo.get(key), "without": without.get(key), "dead": key in dead,
        })
    out = []
    for domain, experts in groups.items():
        shares = [e for e in experts if e["domain_share"] is not None]
        top = max(shares, key=lambda e: e["domain_share"]) if shares else None
        if len(experts) == 1:
            summary = f"One expert serves {domain}"
        else:
            summary = f"{len(experts)} experts compete for {domain} inputs"
        if top is not None:
            summary += (f"; the router sends {100 * top['domain_share']:.0f} % of {domain}'s "
                        f"dispatches to {top['label']}")
        out.append({"domain": domain, "experts": experts, "summary": summary + ".",
                    "competing": len(experts) > 1})
    return out


def hyperparameters(version: GatingVersion) -> list[dict]:
    """The version's hyperparameters as rows (name, value, meaning); the main knobs it left
    unset are listed as the training default."""
    params = version.params or {}
    names = list(params) + [n for n in SHOWN_PARAMS if n not in params]
    return [{"name": n, "value": param_words(params[n]) if n in params else None,
             "set": n in params, "meaning": PARAM_MEANINGS.get(n, "")} for n in names]


def param_words(value) -> str:
    """A hyperparameter's value as a reader writes it, not as Python prints it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(param_words(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def loads_identical(report: dict) -> bool:
    """Whether the regularised and unregularised routers gave every expert the same load."""
    a = (report.get("routing") or {}).get("load") or {}
    b = (((report.get("unregularized") or {}).get("routing") or {}).get("load")) or {}
    return bool(a) and a.keys() == b.keys() and all(abs(a[k] - b[k]) <= charts.SAME for k in a)
