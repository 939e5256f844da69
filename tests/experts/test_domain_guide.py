"""Maintainers write a domain's playground examples and label help on the domain page; nobody
else can, and a private test row is refused as an example."""
from __future__ import annotations

import html

import pytest

from experts.models import Domain
from tests.helpers import make_domain

LABELS = ["ABBR", "LOC"]


@pytest.fixture
def questions(db) -> Domain:
    return make_domain("quiz", labels=LABELS, splits={
        "train": [{"text": "What does NASA stand for?", "label": "ABBR"}],
        "test": [{"text": "Where is the secret test row?", "label": "LOC"}]})


def post_guide(client, domain, examples: str, label_help: str):
    return client.post(f"/experts/domains/{domain.name}/guide/",
                       {"examples": examples, "label_help": label_help})


def test_it_saves_what_a_maintainer_writes_and_shows_it(client, maintainer, questions):
    client.force_login(maintainer)
    response = post_guide(client, questions, "Where is Lima?\n\n  Who is Ada?  ",
                          "LOC: location: the answer is a place\nABBR: abbreviation")
    assert response.status_code == 302
    questions.refresh_from_db()
    assert questions.examples == ["Where is Lima?", "Who is Ada?"]
    assert questions.label_help == {"LOC": "location: the answer is a place",
                                    "ABBR": "abbreviation"}
    page = html.unescape(client.get(f"/experts/domains/{questions.name}/", follow=True)
                         .content.decode())
    assert "<li>Where is Lima?</li>" in page
    assert "<dt><code>LOC</code></dt><dd>location: the answer is a place</dd>" in page
    assert 'name="examples"' in page  # the form, filled with what is stored
    assert "Where is Lima?\nWho is Ada?</textarea>" in page


@pytest.mark.parametrize("who", ["anonymous", "owner", "stranger"])
def test_it_refuses_everyone_but_maintainers(who, client, owner, stranger, questions):
    if who != "anonymous":
        client.force_login(owner if who == "owner" else stranger)
    response = post_guide(client, questions, "Where is Lima?", "")
    assert response.status_code == (302 if who == "anonymous" else 403)
    if who == "anonymous":
        assert response["Location"].startswith("/login/")
    else:
        assert "only maintainers can edit" in response.content.decode()
        assert 'name="examples"' not in client.get(
            f"/experts/domains/{questions.name}/").content.decode()
    questions.refresh_from_db()
    assert questions.examples == []


@pytest.mark.parametrize("examples, label_help, message", [
    ("Where is the secret test row?", "", "example 1 is a row of a private split"),
    ("ok", "NUM: number", "label help for NUM, which this domain does not have; its labels "
                          "are ABBR, LOC"),
    ("ok", "LOC location", "line 1: write the label, a colon, then plain words"),
    ("x" * 301, "", "example 1 has 301 characters; at most 300"),
])
def test_it_says_what_is_wrong_and_keeps_the_old_guide(client, maintainer, questions,
                                                       examples, label_help, message):
    client.force_login(maintainer)
    response = post_guide(client, questions, examples, label_help)
    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())
    questions.refresh_from_db()
    assert questions.examples == [] and questions.label_help == {}
