"""Writes the demo's synthetic sample set from a small set of templates, deterministically.

    python -m experts.demo_data.generate    # rewrites experts/demo_data/*/{train,dev,test}.jsonl

Every sentence is a template of this file with its slots filled in: synthetic data, written for
the project, enough rows that each number the demo shows rests on over a hundred test rows
instead of a dozen. Each template feeds one split only (most feed train), so dev and test are
phrasings the experts never saw in training, with the same vocabulary: the scores measure more
than recall of memorised sentences, and are still higher than on real data.
"""
from __future__ import annotations

import itertools
import json
import random
import string
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = {"train": 96, "dev": 120, "test": 120}  # per domain; divisible by 2, 4 and 6 labels
# Template i of a label feeds SPLIT_OF[i % 5]: three of every five feed train.
SPLIT_OF = ("train", "train", "train", "dev", "test")

SLOTS: dict[str, dict[str, list[str]]] = {
    "news": {
        "country": ["Kenya", "Peru", "Norway", "Vietnam", "Chile", "Ghana", "Poland", "Nepal"],
        "leader": ["the prime minister", "the president", "the foreign minister",
                   "the opposition leader", "the interior minister"],
        "team": ["the home side", "the champions", "the visitors", "the national team",
                 "the league leaders", "the underdogs"],
        "sport": ["football", "rugby", "tennis", "cricket", "basketball", "cycling"],
        "firm": ["the carmaker", "the retailer", "the airline", "the bank", "the brewer",
                 "the shipping group"],
        "amount": ["4 percent", "12 percent", "a third", "2 billion dollars", "half",
                   "800 million euros"],
        "tech": ["a battery", "a telescope", "a vaccine", "a chip", "a satellite", "a robot",
                 "a language model"],
        "lab": ["researchers", "engineers", "astronomers", "a university team", "scientists"],
    },
    "questions": {
        "lead": ["", "quick question: ", "in simple words, ", "for a school quiz, ",
                 "I always wondered: "],
        "term": ["NASA", "UNESCO", "laser", "radar", "scuba", "DNA", "GDP", "HTML"],
        "thing": ["a black hole", "inflation", "photosynthesis", "a tsunami", "democracy",
                  "a vaccine", "an eclipse", "erosion"],
        "object": ["instrument", "animal", "plant", "dish", "sport", "currency"],
        "place_of": ["Brazil", "Japan", "Egypt", "Canada", "Italy", "India", "Kenya", "Peru"],
        "deed": ["invented the telephone", "painted the Mona Lisa", "wrote Hamlet",
                 "discovered penicillin", "founded the Red Cross", "composed the Four Seasons",
                 "first climbed Everest", "designed the Eiffel Tower"],
        "landmark": ["the Great Barrier Reef", "the Taj Mahal", "Machu Picchu", "the Sahara",
                     "Mount Kilimanjaro", "the Amazon river", "Angkor Wat", "Lake Baikal"],
        "measure": ["tall", "long", "deep", "old", "heavy", "far away"],
    },
    "sentiment": {
        "film": ["this thriller", "the sequel", "this comedy", "the documentary", "this drama",
                 "the remake", "this musical", "the animated film"],
        "good": ["gripping", "moving", "hilarious", "beautifully shot", "clever",
                 "warm-hearted", "superbly acted"],
        "bad": ["tedious", "clumsy", "lifeless", "predictable", "badly acted", "muddled",
                "joyless"],
        "part": ["the script", "the lead performance", "the score", "the ending", "the dialogue",
                 "the pacing"],
    },
    "spam": {
        "prize": ["a 500 pound voucher", "a free cruise", "a new phone", "1000 dollars cash",
                  "a luxury holiday", "a shopping card"],
        "code": ["WIN", "CLAIM", "PRIZE", "FREE", "GO", "YES"],
        "number": ["80082", "61610", "87121", "90210", "44455"],
        "friend": ["Sam", "Mum", "Priya", "Tom", "Ana", "Dad", "Leo"],
        "when": ["at six", "tonight", "after work", "tomorrow morning", "on Saturday",
                 "around noon"],
        "place": ["the station", "the cafe", "home", "the gym", "the library", "your place"],
    },
}

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "news": {
        "World": [
            "Voters in {country} queued for hours as {leader} faced a tight election.",
            "Talks between {country} and its neighbours stalled, {leader} told reporters.",
            "Protesters gathered outside parliament in {country} demanding {leader} resign.",
            "Aid convoys reached flooded towns in {country} after {leader} asked for help.",
            "Troops were sent to the border of {country}, according to {leader}.",
        ],
        "Sports": [
            "{team} won the {sport} final after a dramatic last minute.",
            "Injuries left {team} short of players before the {sport} derby.",
            "{team} signed a new coach to rebuild their {sport} squad.",
            "Fans cheered as {team} clinched the {sport} title on Sunday.",
            "A late mistake cost {team} the {sport} semi-final.",
        ],
        "Business": [
            "Shares in {firm} rose {amount} after strong quarterly profits.",
            "{firm} plans to cut costs by {amount} as demand slows.",
            "Investors welcomed a deal that values {firm} at {amount} more than last year.",
            "{firm} reported sales up {amount}, beating analyst forecasts.",
            "Regulators fined {firm} after its prices jumped {amount}.",
        ],
        "Sci/Tech": [
            "{lab} unveiled {tech} that could change how we store energy.",
            "{lab} tested {tech} in the lab for the first time this week.",
            "A startup says its {tech} works with half the power, {lab} confirmed.",
            "{lab} published results showing {tech} lasts twice as long.",
            "Early trials of {tech} impressed {lab} at the conference.",
        ],
    },
    "questions": {
        "ABBR": [
            "{lead}what does {term} stand for?",
            "{lead}what is the full form of {term}?",
            "{lead}what do the letters in {term} mean?",
            "{lead}{term} is an abbreviation of what?",
            "{lead}what is {term} short for?",
        ],
        "DESC": [
            "{lead}what is {thing}?",
            "{lead}how does {thing} happen?",
            "{lead}why does {thing} matter?",
            "{lead}can you describe {thing}?",
            "{lead}what causes {thing}?",
        ],
        "ENTY": [
            "{lead}what {object} is most popular in {place_of}?",
            "{lead}which {object} is a symbol of {place_of}?",
            "{lead}what national {object} does {place_of} have?",
            "{lead}name a {object} that comes from {place_of}.",
            "{lead}what {object} is {place_of} famous for?",
        ],
        "HUM": [
            "{lead}who {deed}?",
            "{lead}which person {deed}?",
            "{lead}name the person who {deed}.",
            "{lead}who was it that {deed}?",
            "{lead}what is the name of the man or woman who {deed}?",
        ],
        "LOC": [
            "{lead}where is {landmark}?",
            "{lead}in which country is {landmark}?",
            "{lead}where can you find {landmark}?",
            "{lead}on which continent is {landmark}?",
            "{lead}where would you travel to see {landmark}?",
        ],
        "NUM": [
            "{lead}how {measure} is {landmark}?",
            "{lead}about how {measure} is {landmark}?",
            "{lead}roughly how {measure} is {landmark} in numbers?",
            "{lead}how {measure} exactly is {landmark}?",
            "{lead}do you know how {measure} {landmark} is?",
        ],
    },
    "sentiment": {
        "positive": [
            "{film} is {good} from start to finish.",
            "I loved {film}: {part} is {good}.",
            "{film} gets everything right, and {part} is {good}.",
            "What a treat: {film} is {good}, and {part} stays with you.",
            "A {good} evening out; {film} deserves every award for {part}.",
        ],
        "negative": [
            "{film} is {bad} from start to finish.",
            "I hated {film}: {part} is {bad}.",
            "{film} gets everything wrong, and {part} is {bad}.",
            "What a waste: {film} is {bad}, and {part} is forgettable.",
            "A {bad} evening out; {film} deserves no praise for {part}.",
        ],
    },
    "spam": {
        "ham": [
            "Hi, it's {friend}, can we meet at {place} {when}?",
            "{friend} here, running late, see you at {place} {when}.",
            "Don't forget we are at {place} {when}, love {friend}.",
            "Can you pick me up from {place} {when}? {friend}",
            "Thanks for today! {friend} says see you at {place} {when}.",
        ],
        "spam": [
            "URGENT! You have won {prize}. Text {code} to {number} to claim.",
            "Congratulations, you are selected for {prize}! Reply {code} to {number} now.",
            "FINAL NOTICE: {prize} is waiting for you. Send {code} to {number} today.",
            "You could get {prize} this week, just text {code} to {number}.",
            "Free entry to win {prize}! Text {code} to {number}, T&Cs apply.",
        ],
    },
}


def _fill(template: str, slots: dict[str, list[str]]) -> list[str]:
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    out = []
    for values in itertools.product(*(slots[n] for n in names)):
        text = template.format(**dict(zip(names, values, strict=True)))
        out.append(text[0].upper() + text[1:])
    return out


def domain_rows(name: str, labels: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The rows of each split of one domain: balanced over labels, shuffled, no repeats."""
    rng = random.Random(f"moecollab-demo-{name}")
    splits: dict[str, list[tuple[str, str]]] = {kind: [] for kind in ROWS}
    for label in labels:
        pools: dict[str, list[str]] = {kind: [] for kind in ROWS}
        for i, template in enumerate(TEMPLATES[name][label]):
            pools[SPLIT_OF[i % len(SPLIT_OF)]].extend(_fill(template, SLOTS[name]))
        for kind, pool in pools.items():
            unique = sorted(set(pool))
            rng.shuffle(unique)
            want = ROWS[kind] // len(labels)
            if len(unique) < want:
                raise ValueError(f"{name}/{label}/{kind}: {len(unique)} texts, want {want}")
            splits[kind].extend((text, label) for text in unique[:want])
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def main() -> None:
    seen: set[str] = set()
    for name in TEMPLATES:
        labels = json.loads((HERE / name / "domain.json").read_text(encoding="utf-8"))["labels"]
        assert sorted(labels) == sorted(TEMPLATES[name]), name
        for kind, rows in domain_rows(name, labels).items():
            texts = {t for t, _ in rows}
            assert not texts & seen, f"{name}/{kind} repeats a text of another split"
            seen |= texts
            (HERE / name / f"{kind}.jsonl").write_text(
                "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n"
                        for t, y in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
