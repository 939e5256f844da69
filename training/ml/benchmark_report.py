"""Benchmark report helpers: routing by input length and the markdown summary table."""
from __future__ import annotations

LENGTH_BUCKETS = ((1, 5), (6, 14), (15, 10_000))  # words per input


def routing_by_length(domains, eval_split: str, preds, experts) -> dict:
    """Routing accuracy per domain and input length (words), on every evaluation input.

    Sentiment's train split holds phrases while real inputs are sentences: this shows whether
    sentence-length inputs are routed as well as the short phrases the router mostly saw.
    """
    out: dict[str, dict] = {}
    for d, p in zip(domains, preds, strict=True):
        words = [len(t.split()) for t, _ in (d.test if eval_split == "test" else d.dev)]
        hits = [experts[e].config.domain == d.name for e in p.topk_idx[:, 0].tolist()]
        row = {}
        for lo, hi in LENGTH_BUCKETS:
            sel = [h for h, w in zip(hits, words, strict=True) if lo <= w <= hi]
            key = f"{lo}-{hi}" if hi < 10_000 else f">={lo}"
            row[key] = {"n": len(sel), "accuracy": sum(sel) / len(sel) if sel else None}
        out[d.name] = row
    return out


def markdown_table(report: dict) -> str:
    """Per-domain accuracy / macro-F1 table plus routing and compute lines."""
    cols = ["oracle", "baseline", "moe", "moe_dense", "moe_unregularized"]
    lines = [
        f"eval split: {report['eval_split']}",
        "",
        "| domain | n | " + " | ".join(f"{c} acc / F1" for c in cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for name, row in report["domains"].items():
        cells = [f"{row[c]['accuracy']:.4f} / {row[c]['macro_f1']:.4f}" for c in cols]
        lines.append(f"| {name} | {row['n_eval']} | " + " | ".join(cells) + " |")
    s = report["summary"]
    cells = [f"{s[c]['accuracy']:.4f} / {s[c]['macro_f1']:.4f}" for c in cols]
    lines.append("| **summary** | | " + " | ".join(cells) + " |")
    lines.append("")
    for key in ("routing", "routing_unregularized"):
        r = report[key]
        load = ", ".join(f"{k} {v:.3f}" for k, v in r["load"].items())
        lines.append(
            f"{key}: accuracy {r['accuracy']:.4f}, entropy {r['entropy']:.4f} nats "
            f"(normalised {r['normalized_entropy']:.4f}), utilisation {r['utilization']:.4f}, "
            f"dead {r['dead_experts']}, load {load}"
        )
    c = report["compute"]
    lines.append(
        f"compute: dense {c['dense_flops_per_input'] / 1e6:.2f} MFLOPs/input, routed "
        f"{c['routed_flops_per_input'] / 1e6:.2f} MFLOPs/input, reduction {c['reduction']:.4f}"
    )
    t = report["timings_s"]
    lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    return "\n".join(lines)
