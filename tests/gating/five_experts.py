"""An evaluated gating version with five experts with long names, three of them competing for
news, built as database rows with a report shaped like gating.ml.evaluate's (no training)."""
from __future__ import annotations

from django.utils import timezone

from experts.models import Domain, Expert
from gating.models import GatingMember, GatingVersion
from tests.helpers import make_domain, make_expert, make_version

# (domain, expert name, kind): three news experts compete; spam and sentiment have one each.
EXPERTS = [
    ("news", "news-distilbert-finetuned-topic-head", "head"),
    ("news", "news-headlines-lora-adapter-rank8", "lora"),
    ("news", "news-business-and-world-branch", "branch"),
    ("spam", "sms-spam-filter-multilingual-head", "head"),
    ("sentiment", "movie-review-sentiment-polarity", "head"),
]
LOAD = [0.22, 0.16, 0.12, 0.26, 0.24]
LOAD_UNREG = [0.55, 0.02, 0.03, 0.22, 0.18]
SHAPLEY = [0.11, 0.04, 0.02, 0.26, 0.24]
SHAPLEY_CI = [[0.09, 0.13], [0.02, 0.06], [-0.01, 0.05], [0.24, 0.28], [0.22, 0.26]]
LOO = [0.05, 0.01, 0.004, 0.31, 0.29]


def curve(n: int = 12, *, offset: float = 0.0) -> list[dict]:
    return [{"epoch": e, "train_total": 1.4 / e + 0.1 + offset, "train_nll": 1.3 / e + 0.08,
             "dev_nll": 1.35 / e + 0.12 + 0.004 * e, "dev_accuracy": 0.6 + 0.3 * (1 - 1 / e)}
            for e in range(1, n + 1)]


def five_expert_version(owner, *, number: int = 1, same_unregularised: bool = False,
                        ) -> tuple[GatingVersion, list[str]]:
    """The version and its expert keys. same_unregularised: the unregularised router's loads
    and curves equal the regularised ones (the case the dashboard must point out)."""
    domains = {name: Domain.objects.filter(name=name).first()
               or make_domain(name, labels=["a", "b"]) for name in ("news", "spam", "sentiment")}
    versions = []
    for domain, name, kind in EXPERTS:
        expert = (Expert.objects.filter(owner=owner, name=name).first()
                  or make_expert(owner, domains[domain], name))
        v = make_version(expert)
        v.kind = kind
        v.save(update_fields=["kind"])
        versions.append(v)
    keys = [str(v.pk) for v in versions]
    routing = {"n_inputs": 600, "accuracy": 0.95, "entropy": 0.61, "normalized_entropy": 0.38,
               "utilization": 0.96, "dead_experts": [], "load": dict(zip(keys, LOAD, strict=True))}
    matrix = {
        "news": dict(zip(keys, [0.52, 0.30, 0.16, 0.01, 0.01], strict=True)),
        "spam": dict(zip(keys, [0.02, 0.0, 0.01, 0.95, 0.02], strict=True)),
        "sentiment": dict(zip(keys, [0.03, 0.01, 0.0, 0.02, 0.94], strict=True)),
    }
    # Wilson 95 % intervals of 172, 194 and 162 hits in 200 rows.
    domain_rows = {d: {"accuracy": acc, "macro_f1": acc - 0.03, "n": 200, "interval": ci}
                   for d, acc, ci in (("news", 0.86, [0.805, 0.902]),
                                      ("spam", 0.97, [0.936, 0.986]),
                                      ("sentiment", 0.81, [0.750, 0.858]))}
    report = {
        "eval_split": {"news": "test", "spam": "test", "sentiment": "test"},
        "n_eval": {"news": 200, "spam": 200, "sentiment": 200},
        "domains": domain_rows,
        "summary": {"accuracy": 0.88, "macro_f1": 0.85},
        "routing": routing,
        "unregularized": {
            "summary": {"accuracy": 0.85},
            "domains": {d: {"accuracy": r["accuracy"] - 0.02} for d, r in domain_rows.items()},
            "routing": dict(routing) if same_unregularised else {
                "n_inputs": 600, "accuracy": 0.93, "entropy": 0.2, "normalized_entropy": 0.12,
                "utilization": 0.71, "dead_experts": keys[1:3],
                "load": dict(zip(keys, LOAD_UNREG, strict=True))},
        },
        "routing_matrix": matrix,
        "compute": {"trunk_flops_per_input": 21.9e6, "router_flops_per_input": 1.5e3,
                    "dense_flops_per_input": 22.4e6, "routed_flops_per_input": 22.0e6,
                    "reduction": 1 - 22.0 / 22.4, "n_inputs": 12},
        "accuracy_without": dict(zip(keys, [0.88 - x for x in LOO], strict=True)),
        "credit": dict(zip(keys, LOO, strict=True)),
        "shapley": dict(zip(keys, SHAPLEY, strict=True)),
        "shapley_ci95": dict(zip(keys, SHAPLEY_CI, strict=True)),
        "shapley_method": {"method": "sampled", "permutations": 200, "coalitions": 31},
    }
    reg = curve()
    version = GatingVersion.objects.create(
        number=number, status=GatingVersion.Status.EVALUATED, report=report,
        trained_by=owner, trained_at=timezone.now(), backbone_fingerprint="9f3c" * 16,
        split_layer=6,
        training_curves={"regularized": reg,
                         "unregularized": reg if same_unregularised else curve(offset=-0.05)},
        params={"top_k": 1, "lambda_bal": 0.01, "lambda_h": 0.01, "epochs": 12, "seed": 0},
    )
    for i, v in enumerate(versions):
        GatingMember.objects.create(version=version, expert_version=v, position=i)
    return version, keys
