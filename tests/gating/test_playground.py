"""The playground: example texts per domain, plain words for label codes, and each label's
probability from the real production model (built without a worker)."""
from __future__ import annotations

import html
import re

import pytest

from experts.domain_guides import STANDARD_GUIDES
from experts.models import Domain
from tests.gating.playground_model import production_model
from tests.helpers import make_domain

pytestmark = pytest.mark.usefixtures("fresh_serving")


@pytest.fixture
def production(owner, maintainer, tmp_path):
    # Every text goes to the questions expert (index 1), so the answering domain is known.
    return production_model(owner=owner, maintainer=maintainer, folder=tmp_path, favour=1)


def page_of(response) -> str:
    return html.unescape(response.content.decode())


def test_it_lists_each_domains_examples_and_label_words(client, production):
    page = page_of(client.get("/gating/playground/"))
    for name in ("news", "questions"):
        for example in STANDARD_GUIDES[name]["examples"]:
            assert f'name="texts" value="{example}"' in page, example
    assert "<dt><code>LOC</code></dt><dd>location: the answer is a place</dd>" in page
    assert "<dt><code>HUM</code></dt><dd>person: the answer is a person" in page
    # spam is not part of the production model: its examples would get no answer
    assert STANDARD_GUIDES["spam"]["examples"][0] not in page


def test_it_never_offers_a_private_test_row_as_an_example(client, db):
    secret = "the private test row nobody may read"
    make_domain("secret", labels=["a", "b"], splits={"test": [{"text": secret, "label": "a"}],
                                                    "train": [{"text": "hi", "label": "b"}]})
    page = page_of(client.get("/gating/playground/"))
    assert "No examples written for this domain yet." in page
    assert secret not in page


def test_it_answers_an_example_with_every_labels_probability(client, production):
    text = STANDARD_GUIDES["questions"]["examples"][0]
    response = client.post("/gating/playground/", {"texts": text})
    assert response.status_code == 200
    page = page_of(response)
    row = re.search(r'<table class="table" id="predictions">.*?</table>', page, re.S).group(0)
    assert text in row
    # the router sends everything to the questions expert, whose six labels carry all the mass
    assert re.search(r'<td>questions</td>', row)
    assert 'class="muted">news:' not in row  # no label of another domain gets a bar
    names = re.findall(r'<span class="bar-label">(\w+)</span> <span class="label-words">(\w+)',
                       row)
    assert sorted(names) == sorted(
        (label, words.split(":")[0])
        for label, words in STANDARD_GUIDES["questions"]["label_help"].items())
    percents = [float(p) for p in re.findall(r'<span class="bar-value">([\d.]+) %</span>', row)]
    assert len(percents) == 6 and percents == sorted(percents, reverse=True)
    assert sum(percents) == pytest.approx(100.0, abs=0.5)
    widths = [float(w) for w in re.findall(r'class="bar-fill" style="width: ([\d.]+)%"', row)]
    assert widths == percents
    # the predicted label code comes with its plain words
    label = re.search(r'<b class="label-code">(\w+)</b>', row).group(1)
    words = STANDARD_GUIDES["questions"]["label_help"][label]
    assert (f'<td><b class="label-code">{label}</b></td>\n      <td class="meaning">'
            f'<span class="label-words">{words}</span></td>') in row
    # the top bar is the confidence the API gives for the same text, on the same label
    from tests.helpers import api_client_for

    answer = api_client_for(None).post("/api/v1/predict/", {"texts": [text]},
                                       format="json").json()["predictions"][0]
    assert answer["label"] == label
    assert percents[0] == pytest.approx(100 * answer["confidence"], abs=0.05)


def test_it_keeps_the_api_answer_without_probabilities(production):
    from tests.helpers import api_client_for

    response = api_client_for(None).post("/api/v1/predict/", {"texts": ["Who wrote Hamlet?"]},
                                         format="json")
    assert response.status_code == 200, response.content
    assert "probabilities" not in response.json()["predictions"][0]


def test_it_explains_only_labels_a_maintainer_described(db):
    domain = Domain.objects.create(name="toy", labels=["x", "y"], label_help={"y": "why"})
    assert domain.labels_explained() == [("y", "why")]
    assert domain.label_explained("x") == ""


def test_it_fills_the_standard_guide_only_for_matching_labels_and_keeps_edits(db):
    questions = make_domain("questions", labels=STANDARD_GUIDES["questions"]["labels"])
    questions.examples = ["my own example"]
    questions.save()
    assert questions.apply_standard_guide()
    questions.refresh_from_db()
    assert questions.examples == ["my own example"]
    assert questions.label_help["NUM"].startswith("number")
    other = make_domain("news", labels=["politics", "other"])
    assert not other.apply_standard_guide()
    other.refresh_from_db()
    assert other.examples == [] and other.label_help == {}


def test_it_fills_the_guide_of_an_imported_standard_domain_like_the_demo(db):
    from experts import selectors, services
    from moecollab_site.demo import SAMPLE_DATA_DIR

    domain = services.domain_import_folder(path=SAMPLE_DATA_DIR / "questions")
    assert domain.label_help["LOC"] == "location: the answer is a place"
    private = {text for text, _ in selectors.domain_rows(domain=domain, kind="test")}
    assert private and not private & set(domain.examples)  # no example is a private test row
