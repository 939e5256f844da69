"""First steps: the navigation leads to the playground and the requests board, the home page
shows the production model, and a new contributor sees the way to a first expert."""
from __future__ import annotations

import html

import pytest

from gating.models import GatingVersion
from tests.gating.playground_model import production_model
from tests.helpers import make_expert, make_version


def page(client, path: str = "/") -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return html.unescape(response.content.decode())


@pytest.mark.parametrize("who", ["anonymous", "owner", "maintainer"])
def test_it_puts_playground_and_requests_in_the_top_navigation(who, client, owner, maintainer):
    if who != "anonymous":
        client.force_login(owner if who == "owner" else maintainer)
    nav = page(client).split('<nav class="mainnav">')[1].split("</nav>")[0]
    assert '<a href="/gating/playground/">Playground</a>' in nav
    assert '<a href="/experts/requests/">Requests</a>' in nav
    assert client.get("/experts/requests/").status_code == 200


def test_it_shows_the_production_model_and_the_playground_on_home(client, owner, maintainer,
                                                                  tmp_path):
    gating = production_model(owner=owner, maintainer=maintainer, folder=tmp_path)
    GatingVersion.objects.filter(pk=gating.pk).update(
        report={"summary": {"accuracy": 0.8124, "macro_f1": 0.8}})
    home = page(client)
    card = home.split('id="production"')[1].split("</div>")[0]
    assert f'<a href="/gating/{gating.pk}/">gating v{gating.number}</a>' in card
    assert "Test accuracy 0.812 (mean over domains)." in card
    assert "2 experts:" in card and "news-head" in card and "questions-head" in card
    assert 'href="/gating/playground/">Ask it in the playground</a>' in card


def test_it_says_how_production_comes_about_when_there_is_none(client, db):
    home = page(client)
    assert "No gating model is in production yet" in home
    assert 'href="/gating/playground/">Try the playground</a>' in home
    assert "Become a contributor" in home


def test_it_shows_a_new_contributor_the_way_to_a_first_expert(client, db):
    response = client.post("/signup/", {
        "username": "newbie", "email": "newbie@example.org",
        "password1": "a-long-Passphrase-42", "password2": "a-long-Passphrase-42",
    }, follow=True)
    home = html.unescape(response.content.decode())
    assert "Welcome, newbie: you are a contributor now." in home
    assert "Become a contributor" not in home
    steps = home.split('id="first-steps"')[1].split("</section>")[0]
    assert "python manage.py train_expert --data my-domain/ --kind head --out my-expert/" in steps
    assert "moecollab train --data my-domain/ --kind head --out my-expert/" in steps
    assert 'href="/experts/new/">Create an expert</a>' in steps
    assert "private test split" in steps and "reviews it" in steps


def test_it_hides_the_first_steps_once_the_contributor_has_an_expert(client, owner, news):
    client.force_login(owner)
    assert 'id="first-steps"' in page(client)
    make_expert(owner, news)
    assert 'id="first-steps"' not in page(client)


def test_it_tells_the_owner_how_to_make_the_first_version(client, owner, stranger, expert):
    client.force_login(owner)
    detail = page(client, f"/experts/{expert.pk}/")
    box = detail.split("<h2>No version yet</h2>")[1].split("</div>")[0]
    assert f'href="/experts/{expert.pk}/upload/">Upload a version</a>' in box
    assert f'href="/experts/{expert.pk}/train/">Train from a dataset</a>' in box
    assert "python manage.py train_expert --data my-domain/ --kind head --out my-expert/" in box
    client.force_login(stranger)
    box = page(client, f"/experts/{expert.pk}/").split("<h2>No version yet</h2>")[1]
    assert "Nothing has been approved yet." in box and "train_expert" not in box
    make_version(expert)
    client.force_login(owner)
    assert "No version yet" not in page(client, f"/experts/{expert.pk}/")
