"""Model cards: a safe markdown description, labels, checks once each, usage snippets, the
try-it box, production and credit badges, provenance, every accuracy with n and interval, and
the Hub README.md of every public version."""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
import yaml

from experts.leaderboards import leaderboards_refresh
from experts.models import ExpertVersion
from tests.experts.test_leaderboards import production_with
from tests.helpers import REPO, make_artifact, make_expert, make_version

S = ExpertVersion.Status

HOSTILE = """**bold claim** and a [paper](https://arxiv.org/abs/2503.12592).

<script>alert('xss-script')</script>
<img src=x onerror="alert('xss-img')">
<a href="https://example.org" onclick="alert('xss-click')">click</a>
[js](javascript:alert('xss-link')) [js2](JaVaScRiPt:alert('xss-link2'))
<iframe src="https://evil.example/"></iframe>
<div style="position:fixed;inset:0">cover</div>

- one
- two
"""

UPLOAD_CHECKS = ["file sizes", "manifest json", "manifest schema", "backbone",
                 "safetensors header", "tensors match manifest", "tensors match architecture",
                 "finite values"]


def _body(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.fixture
def real(tmp_path, expert) -> ExpertVersion:
    """alice's approved news expert with a real artifact (manifest with training and metrics)."""
    make_artifact(tmp_path / "art")
    version = make_version(expert, status=S.APPROVED, accuracy=0.85, artifact=tmp_path / "art")
    return version


def test_it_renders_the_description_as_markdown_without_hostile_html(client, expert):
    expert.description = HOSTILE
    expert.save()
    make_version(expert, status=S.APPROVED, accuracy=0.8)
    for url in (f"/experts/{expert.pk}/", f"/experts/{expert.pk}/versions/1/"):
        body = _body(client.get(url))
        assert "<strong>bold claim</strong>" in body
        assert '<a href="https://arxiv.org/abs/2503.12592" rel="nofollow noopener noreferrer">' \
               "paper</a>" in body
        assert "<li>one</li>" in body
        for bad in ("xss-script", "onerror", "onclick", "javascript:", "JaVaScRiPt:", "<iframe",
                    "evil.example", "position:fixed", "<img"):
            assert bad not in body, (url, bad)


def test_it_lists_each_check_once_with_where_it_ran(client, owner, expert):
    version = make_version(expert, status=S.INVALID)
    version.checks = (
        [{"name": n, "ok": True, "message": "ok on upload", "where": "upload"}
         for n in UPLOAD_CHECKS]
        + [{"name": n, "ok": n != "finite values", "where": "worker",
            "message": "tensor 'w' holds NaN" if n == "finite values" else "ok in the worker"}
           for n in UPLOAD_CHECKS]
        + [{"name": "outputs on real inputs", "ok": True, "where": "worker", "message": "fine"}])
    version.save()
    assert len(version.checks) == 17
    client.force_login(owner)
    body = _body(client.get(f"/experts/{expert.pk}/versions/1/"))
    table = body[body.index('id="checks"'):body.index("</table>", body.index('id="checks"'))]
    rows = re.findall(r"<tr class=\"(ok|bad)\">", table)
    assert len(rows) == 9 and rows.count("bad") == 1
    for name in UPLOAD_CHECKS:
        assert table.count(f"<td>{name}</td>") == 1, name
    assert "on upload and in the validation job" in table
    assert "tensor &#x27;w&#x27; holds NaN" in table  # the failing run's message, not the "ok"


def test_it_shows_labels_provenance_and_dev_metrics_from_the_manifest(client, real):
    body = _body(client.get(f"/experts/{real.expert_id}/versions/{real.number}/"))
    labels = body[body.index('id="labels"'):body.index("</dd>", body.index('id="labels"'))]
    assert [m for m in re.findall(r'<code class="label">([^<]+)</code>', labels)] == \
        ["World", "Sports", "Business", "Sci/Tech"]
    provenance = body[body.index('id="provenance"'):body.index('id="dev-metrics"')]
    assert "<dt>note</dt><dd>random weights made by a test</dd>" in provenance
    assert "<dt>seed</dt><dd>0</dd>" in provenance
    assert "the platform has not checked it" in provenance  # an upload's claim, said so
    dev = body[body.index('id="dev-metrics"'):body.index('id="usage"')]
    assert "dev_accuracy" in dev and "0.250" in dev
    assert "n not recorded, so no interval" in dev  # this manifest gives no n_dev


def test_it_gives_every_accuracy_its_n_and_a_wilson_interval(client, owner, stranger, expert):
    rival = make_expert(stranger, expert.domain, name="rival")
    make_version(rival, status=S.APPROVED, accuracy=0.9)
    make_version(expert, status=S.APPROVED, accuracy=0.85)  # n_eval 40 (make_version)
    body = _body(client.get(f"/experts/{expert.pk}/versions/1/"))
    metrics = body[body.index('class="table compact metrics"'):]
    # 34 of 40: Wilson [0.709, 0.929]; 36 of 40: [0.769, 0.960]
    assert "0.850</span> <span class=\"acc-ci\" title=\"95 % Wilson interval\">[0.709, 0.929]" \
        in metrics
    assert "n&nbsp;=&nbsp;40" in metrics
    comparison = body[body.index('class="table compact comparison"'):]
    assert "[0.709, 0.929]" in comparison and "[0.769, 0.960]" in comparison
    history = _body(client.get(f"/experts/{expert.pk}/"))
    cell = history[history.index('<td class="accuracy">'):]
    assert cell.index("[0.709, 0.929]") < cell.index("</td>")


def test_it_reads_the_dev_n_from_the_manifest_for_its_interval(client, expert):
    version = make_version(expert, status=S.APPROVED, accuracy=0.8)
    version.manifest = {**version.manifest, "kind": "head", "labels": ["a", "b"],
                        "training": {"n_dev": 100, "epochs_run": 3},
                        "metrics": {"dev_accuracy": 0.5, "dev_macro_f1": 0.4, "n_dev": 100.0}}
    version.save()
    dev = _body(client.get(f"/experts/{expert.pk}/versions/1/"))
    dev = dev[dev.index('id="dev-metrics"'):dev.index('id="usage"')]
    assert "[0.404, 0.596]" in dev and "n&nbsp;=&nbsp;100" in dev  # 50 of 100
    assert "<td>n_dev</td>" not in dev  # the n is shown with the accuracy, not as a metric
    assert "0.4000" in dev  # macro-F1 is no proportion: no Wilson interval for it


def test_it_shows_curl_and_python_snippets_against_the_predict_api(client, real):
    body = _body(client.get(f"/experts/{real.expert_id}/versions/{real.number}/"))
    start = body.index('id="snippet-curl"')
    curl = body[start:body.index("</pre>", start)]
    assert 'curl -s -X POST \\\n  "http://testserver/api/v1/predict/"' in curl
    assert "Content-Type: application/json" in curl and '{"texts": [' in curl
    python = body[body.index('id="snippet-python"'):]
    python = python[:python.index("</pre>")]
    assert "requests.post(" in python and "http://testserver/api/v1/predict/" in python
    assert 'response.json()["predictions"]' in python


def test_it_offers_the_try_it_box_only_with_a_model_in_production(client, real, maintainer,
                                                                   stranger, news):
    url = f"/experts/{real.expert_id}/versions/{real.number}/"
    body = _body(client.get(url))
    assert "No gating model is in production yet" in body and 'id="try-it-form"' not in body
    other = make_version(make_expert(stranger, news, "other"))
    production_with([other], {"summary": {"accuracy": 0.7}}, maintainer)
    body = _body(client.get(url))
    assert 'id="try-it-form"' in body and 'data-predict-url="/api/v1/predict/"' in body
    assert f'data-version-id="{real.pk}"' in body and "/static/js/version.js" in body
    assert "This version is not in the production model (gating v1)" in body
    assert 'action="/gating/playground/"' in body  # the same question without JavaScript
    assert "In production" not in body


def test_it_badges_production_membership_and_the_shapley_credit(client, owner, stranger,
                                                                 maintainer, real, news):
    twin = make_version(make_expert(stranger, news, "twin"))
    keys = [str(real.pk), str(twin.pk)]
    production_with([real, twin], {
        "summary": {"accuracy": 0.8}, "credit": {keys[0]: 0.05, keys[1]: 0.01},
        "shapley": {keys[0]: 0.42, keys[1]: 0.38},
        "shapley_ci95": {keys[0]: [0.40, 0.44], keys[1]: [0.36, 0.40]},
        "shapley_method": {"method": "sampled"},
    }, maintainer)
    leaderboards_refresh()
    for url in (f"/experts/{real.expert_id}/versions/{real.number}/",
                f"/experts/{real.expert_id}/"):
        body = _body(client.get(url))
        badges = body[body.index('id="badges"'):body.index("</p>", body.index('id="badges"'))]
        assert "In production · gating v1" in badges
        assert "Shapley credit +0.4200 [0.4000, 0.4400]" in badges
        assert "leave-one-out +0.0500" in badges
    body = _body(client.get(f"/experts/{twin.expert_id}/versions/{twin.number}/"))
    assert "Shapley credit +0.3800 [0.3600, 0.4000]" in body
    newer = make_version(real.expert, status=S.APPROVED, accuracy=0.5)  # not a member
    body = _body(client.get(f"/experts/{real.expert_id}/versions/{newer.number}/"))
    assert 'id="badges"' not in body and "This version is not in the production model" in body


def test_it_serves_the_hub_readme_of_a_public_version(client, real, stranger):
    page = _body(client.get(f"/experts/{real.expert_id}/versions/{real.number}/"))
    url = f"/experts/{real.expert_id}/versions/{real.number}/download/"
    assert f'href="{url}?file=readme"' in page
    assert f'href="{url}?file=readme"' in _body(client.get(f"/experts/{real.expert_id}/"))
    response = client.get(url + "?file=readme")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert 'filename="news-mlp-v1-README.md"' in response["Content-Disposition"]
    text = response.content.decode()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["base_model"] == real.manifest["backbone"]["name"]
    assert front["pipeline_tag"] == "text-classification" and front["datasets"] == ["news"]
    assert front["license"] == "cc-by-4.0"  # the expert's, as the Hub spells it
    assert {"name": "test_accuracy", "value": 0.85} in front["metrics"]
    assert "Accuracy 0.8500 on n = 40 examples" in text
    assert "## Training" in text and "random weights made by a test" in text
    assert "dev_accuracy: 0.2500" in text
    real.refresh_from_db()
    assert real.download_count == 0  # reading the card is not a download of the weights
    folder = zipfile.ZipFile(io.BytesIO(client.get(url + "?file=folder").content))
    assert folder.read("news-mlp-v1/README.md").decode() == text  # one card, two ways


def test_it_keeps_the_readme_of_a_private_version_from_strangers(client, expert, stranger,
                                                                  tmp_path):
    make_artifact(tmp_path / "art")
    make_version(expert, status=S.AWAITING_REVIEW, accuracy=0.7, artifact=tmp_path / "art")
    url = f"/experts/{expert.pk}/versions/1/download/?file=readme"
    assert client.get(url).status_code == 404
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    client.force_login(expert.owner)
    assert client.get(url).status_code == 200


def test_it_keeps_the_upload_progress_bar_hidden_until_an_upload_starts(client, owner, expert):
    client.force_login(owner)
    body = _body(client.get(f"/experts/{expert.pk}/upload/"))
    assert '<p class="upload-progress" hidden>' in body
    assert '<div class="refusal upload-error" role="alert" hidden>' in body
    # `.form p { display: flex }` must not beat the attribute: the site's CSS says so first.
    css = (Path(REPO) / "static" / "css" / "site.css").read_text()
    assert re.search(r"\[hidden\]\s*\{\s*display:\s*none\s*!important;\s*\}", css)
