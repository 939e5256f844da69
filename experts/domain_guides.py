"""Playground examples and plain-word label explanations for the four standard domains.

The texts are written for the playground, not drawn from any split: a domain's test split can
be private, and an example shown to everyone must never leak one of its rows.
"""
from __future__ import annotations

STANDARD_GUIDES: dict[str, dict] = {
    "news": {
        "labels": ["World", "Sports", "Business", "Sci/Tech"],
        "examples": [
            "The striker scored twice as the home side won the derby 3-1.",
            "Shares fell sharply after the bank warned that profits would drop this year.",
            "The new chip doubles battery life, the company's engineers said on Tuesday.",
            "Leaders of both countries signed a ceasefire agreement at the border talks.",
        ],
        "label_help": {
            "World": "world news: politics, conflicts, diplomacy",
            "Sports": "sport: matches, players, results",
            "Business": "business and the economy: companies, markets, money",
            "Sci/Tech": "science and technology: research, computers, gadgets",
        },
    },
    "questions": {
        "labels": ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"],
        "examples": [
            "What is the capital city of Australia?",
            "How many legs does a spider have?",
            "Who painted the ceiling of the Sistine Chapel?",
            "What does the abbreviation NASA stand for?",
            "Why do leaves change colour in autumn?",
            "What instrument did Louis Armstrong play?",
        ],
        "label_help": {
            "ABBR": "abbreviation: the answer is what a short form stands for",
            "DESC": "description: the answer explains or defines something",
            "ENTY": "entity: the answer is a thing (an animal, a colour, an instrument, ...)",
            "HUM": "person: the answer is a person or a group of people",
            "LOC": "location: the answer is a place",
            "NUM": "number: the answer is a count, a date, an amount or a size",
        },
    },
    "sentiment": {
        "labels": ["negative", "positive"],
        "examples": [
            "A warm, funny and beautifully acted film; I loved every minute of it.",
            "Two hours of wooden dialogue and a plot that goes nowhere.",
        ],
        "label_help": {
            "negative": "the reviewer did not like the film",
            "positive": "the reviewer liked the film",
        },
    },
    "spam": {
        "labels": ["ham", "spam"],
        "examples": [
            "WINNER!! You have won a free holiday. Text CLAIM to 80085 now to get your prize!",
            "Running ten minutes late, save me a seat please.",
        ],
        "label_help": {
            "ham": "a normal message from someone you know",
            "spam": "unwanted advertising or a scam",
        },
    },
}


def standard_guide(name: str, labels: list[str]) -> dict | None:
    """The standard examples and label help for a domain of that name and label list, else
    None (a domain that only shares a name gets nothing: its labels may mean other things)."""
    guide = STANDARD_GUIDES.get(name)
    if guide is None or list(labels) != guide["labels"]:
        return None
    return {"examples": list(guide["examples"]), "label_help": dict(guide["label_help"])}
