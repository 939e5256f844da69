"""The benchmark report as a markdown summary table."""
from __future__ import annotations


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
