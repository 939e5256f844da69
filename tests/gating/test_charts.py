"""The dashboard's SVG charts: labels placed apart (by computing their boxes), every legend
series drawn distinctly, notes when two series are the same; compute, expert groups and
hyperparameters said in words."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from gating import charts, dashboard
from gating.dashboard import dashboard_charts
from gating.models import GatingMember, GatingVersion
from tests.gating.five_experts import EXPERTS, five_expert_version
from tests.helpers import make_domain, make_expert, make_version

NS = "{http://www.w3.org/2000/svg}"
LONG = [f"alice/{name} v1" for _, name, _ in EXPERTS]


def text_boxes(svg: str) -> list[tuple[str, float, float, float, float]]:
    """(text, x0, y0, x1, y1) of every <text>, from its position, anchor and lines, with the
    same width estimate the charts lay out by and a 1.05 em high line box."""
    root = ET.fromstring(str(svg))
    out = []
    for el in root.iter(f"{NS}text"):
        size = charts.TITLE if "chart-title" in el.get("class", "") else charts.TICK
        spans = el.findall(f"{NS}tspan")
        lines = [s.text or "" for s in spans] if spans else [el.text or ""]
        x, y = float(el.get("x")), float(el.get("y"))
        width = max(charts.text_width(line, size) for line in lines)
        x0 = {"start": x, "middle": x - width / 2, "end": x - width}[el.get("text-anchor")]
        y1 = y + sum(float(s.get("dy", 0)) for s in spans) + 0.25 * size
        out.append((" / ".join(lines), x0, y - 0.8 * size, x0 + width, y1))
    return out


def overlaps(svg: str) -> list[tuple[str, str]]:
    boxes = text_boxes(svg)
    return [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if min(a[3], b[3]) - max(a[1], b[1]) > 0 and min(a[4], b[4]) - max(a[2], b[2]) > 0]


def outside(svg: str) -> list[str]:
    root = ET.fromstring(str(svg))
    height = float(root.get("viewBox").split()[3])
    return [t for t, x0, y0, x1, y1 in text_boxes(svg)
            if x0 < 0 or x1 > charts.W or y0 < 0 or y1 > height]


def load_chart(unregularised: list[float] | None = None) -> charts.Chart:
    series = {"regularised": [0.22, 0.16, 0.12, 0.26, 0.24]}
    if unregularised is not None:
        series["unregularised"] = unregularised
    return charts.hbars(LONG, series, title="Load per expert vs the even share",
                        reference=0.2, reference_label="even share")


def test_it_keeps_five_long_expert_names_apart_and_inside_the_load_chart():
    chart = load_chart([0.55, 0.02, 0.03, 0.22, 0.18])
    assert overlaps(chart.svg) == []
    assert outside(chart.svg) == []
    # Each name is wrapped, not cut, where it fits in two lines; the full name is its tooltip.
    for name in LONG:
        assert f"<title>{name}</title>" in chart.svg


def test_it_finds_overlaps_when_labels_do_collide():
    """The overlap measure itself: two labels at one spot are caught."""
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 560 100">'
           '<text x="10" y="30" text-anchor="start" class="tick">first label</text>'
           '<text x="40" y="30" text-anchor="start" class="tick">second label</text></svg>')
    assert overlaps(svg) == [("first label", "second label")]


def test_it_places_the_even_share_label_above_the_bars():
    chart = load_chart([0.55, 0.02, 0.03, 0.22, 0.18])
    root = ET.fromstring(str(chart.svg))
    label = next(b for b in text_boxes(chart.svg) if b[0].startswith("even share"))
    assert label[0] == "even share 0.20"
    bars_top = min(float(r.get("y")) for r in root.iter(f"{NS}rect") if r.find(f"{NS}title")
                   is not None)
    assert label[4] <= bars_top


def test_it_draws_identical_bar_series_once_and_says_so():
    same = load_chart([0.22, 0.16, 0.12, 0.26, 0.24])
    assert same.notes == ["The regularised and unregularised values are identical, so one bar "
                          "is drawn for both."]
    assert "regularised = unregularised" in same
    assert len(re.findall(r"<rect [^>]*><title>", same.svg)) == 5
    different = load_chart([0.55, 0.02, 0.03, 0.22, 0.18])
    assert different.notes == []
    assert len(re.findall(r"<rect [^>]*><title>", different.svg)) == 10


def test_it_gives_every_line_its_own_dash_marker_and_legend_entry():
    curve = [(e, 1 / e) for e in range(1, 13)]
    chart = charts.lines({"train loss": curve, "train NLL": [(e, 0.9 / e) for e in range(1, 13)],
                          "dev NLL": [(e, 1.1 / e) for e in range(1, 13)],
                          "unregularised train loss": list(curve)}, title="Router loss")
    root = ET.fromstring(str(chart.svg))
    lines = root.findall(f"{NS}polyline")
    assert [p.get("data-series") for p in lines] == ["train loss", "train NLL", "dev NLL",
                                                      "unregularised train loss"]
    assert len({p.get("stroke-dasharray", "solid") for p in lines}) == 4
    legend = [b[0] for b in text_boxes(chart.svg)]
    for name in ("train loss", "train NLL", "dev NLL", "unregularised train loss"):
        assert name in legend
    assert len(chart.notes) == 1 and "“train loss” and “unregularised train loss” coincide" \
        in chart.notes[0]
    assert overlaps(chart.svg) == [] and outside(chart.svg) == []


def test_it_wraps_a_long_legend_onto_rows():
    names = [f"{n} with a rather long series name" for n in ("first", "second", "third", "fourth")]
    chart = charts.lines({n: [(e, i + 1 / e) for e in range(1, 6)] for i, n in enumerate(names)},
                         title="Many series")
    assert overlaps(chart.svg) == [] and outside(chart.svg) == []
    rows = {round(b[2]) for b in text_boxes(chart.svg) if b[0] in names}
    assert len(rows) >= 2
    assert chart.notes == []


def test_it_keeps_the_heatmap_labels_apart():
    chart = charts.heatmap(LONG, ["news", "spam", "sentiment-of-movie-reviews"],
                           [[0.5, 0.1, 0.0]] * 5, title="Routing")
    assert overlaps(chart.svg) == [] and outside(chart.svg) == []


@pytest.mark.parametrize(("label", "lines"), [
    ("short", ["short"]),
    ("alice/news-distilbert-finetuned-topic-head v1", ["alice/news-distilbert-",
                                                       "finetuned-topic-head v1"]),
])
def test_it_wraps_labels_at_hyphens(label, lines):
    assert charts.wrap_label(label, 190) == lines


def test_it_shortens_a_label_beyond_two_lines():
    lines = charts.wrap_label("x" * 200, 100)
    assert len(lines) == 2 and lines[1].endswith("…")
    assert all(charts.text_width(line) <= 100 for line in lines)


def test_it_says_compute_in_words():
    words = dashboard.compute_words({"dense_flops_per_input": 22.4e6,
                                     "routed_flops_per_input": 22.0e6,
                                     "trunk_flops_per_input": 21.9e6})
    assert words == ("Routing uses 98.2 % of the dense model's FLOPs (22.0 MFLOPs vs 22.4 MFLOPs "
                     "per input); the shared backbone, which every input runs, costs 21.9 MFLOPs "
                     "of that, so routing can save at most the experts' share, 500.0 kFLOPs per "
                     "input.")
    assert dashboard.compute_words({}) is None


def test_it_groups_the_experts_that_compete_for_a_domain(owner):
    version, keys = five_expert_version(owner)
    groups = {g["domain"]: g for g in dashboard.domain_groups(version)}
    assert list(groups) == ["news", "spam", "sentiment"]
    news = groups["news"]
    assert news["competing"] and [e["key"] for e in news["experts"]] == keys[:3]
    assert news["summary"] == ("3 experts compete for news inputs; the router sends 52 % of "
                               "news's dispatches to alice/news-distilbert-finetuned-topic-head "
                               "v1.")
    first = news["experts"][0]
    assert (first["load"], first["load_unregularized"], first["domain_share"]) == (0.22, 0.55,
                                                                                    0.52)
    assert (first["shapley"], first["shapley_ci95"], first["loo"]) == (0.11, [0.09, 0.13], 0.05)
    assert not groups["spam"]["competing"]
    assert groups["spam"]["summary"].startswith("One expert serves spam")


def test_it_draws_the_dashboard_of_five_experts_readably(owner):
    version, _ = five_expert_version(owner)
    out = dashboard_charts(version, None)
    assert set(out) == {"load", "health", "accuracy", "heatmap", "loss", "dev_accuracy"}
    for key, chart in out.items():
        assert chart.caption, key
        assert overlaps(chart.svg) == [], key
        assert outside(chart.svg) == [], key
    assert not dashboard.loads_identical(version.report)
    # Only the dev accuracy curves are the same in this report (its unregularised router
    # differs in loss, not in accuracy).
    assert out["loss"].notes == [] and len(out["dev_accuracy"].notes) == 1

    same, _ = five_expert_version(owner, number=2, same_unregularised=True)
    out = dashboard_charts(same, None)
    assert out["load"].notes and out["loss"].notes
    assert dashboard.loads_identical(same.report)


def test_it_shows_hyperparameters_as_a_table_and_compute_in_words(client, owner):
    version, _ = five_expert_version(owner)
    page = client.get(f"/gating/{version.pk}/").content.decode()
    assert "{&#x27;" not in page and "{'" not in page  # no Python dict repr
    table = page[page.index('<table class="table params">'):]
    table = table[: table.index("</table>")]
    assert re.search(r"<code>lambda_bal</code></td><td>0.01</td>", table)
    assert re.search(r"<code>temperature</code></td><td><span class=\"muted\">training default",
                     table)
    assert re.search(r"<code>mix</code></td><td><span class=\"muted\">training default", table)
    assert "Routing uses 98.2 % of the dense model&#x27;s FLOPs" in page
    assert "FLOPs saved" not in page
    assert page.count('<figure class="chart-card"') == 6
    assert "3 experts compete for news inputs" in page


def test_it_draws_accuracy_intervals_as_whiskers_with_the_value_beyond_them():
    chart = charts.hbars(["news", "spam"], {"v2": [0.86, 0.97]}, xmax=1.0, title="Accuracy",
                         intervals={"v2": [[0.805, 0.902], None]})
    root = ET.fromstring(str(chart.svg))
    whiskers = [p for p in root.iter(f"{NS}path") if p.get("class") == "whisker"]
    assert len(whiskers) == 1
    assert whiskers[0].find(f"{NS}title").text == "95 % interval 0.81 to 0.90"
    hi = float(re.search(r"H([\d.]+)", whiskers[0].get("d")).group(1))
    value = next(b for b in text_boxes(chart.svg) if b[0] == "0.86")
    assert value[1] > hi
    assert overlaps(chart.svg) == [] and outside(chart.svg) == []


@pytest.mark.parametrize(("value", "words"), [
    (None, "none"), (True, "yes"), (False, "no"), ([6, 0], "6, 0"), (0.001, "0.001"),
    (1.0, "1"), (256, "256"), ("cpu", "cpu"),
])
def test_it_writes_hyperparameter_values_in_words(value, words):
    assert dashboard.param_words(value) == words


def test_it_renders_a_version_that_has_no_report_yet(client, owner):
    expert_version = make_version(make_expert(owner, make_domain("news"), "news-head"))
    version = GatingVersion.objects.create(number=1, params={"top_k": 1})
    GatingMember.objects.create(version=version, expert_version=expert_version, position=0)
    assert dashboard_charts(version, None) == {}
    assert dashboard.domain_groups(version)[0]["summary"] == "One expert serves news."
    page = client.get(f"/gating/{version.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "<svg" not in body and "One expert serves news." in body
    assert "Routing uses" not in body
