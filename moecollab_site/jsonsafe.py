"""JSON for the database: NaN and ±Infinity are not JSON, so they are stored as null.

Metrics computed by the engine can be non-finite (a loss that diverged, an expert that outputs
NaN); written as-is they make an invalid document (PostgreSQL refuses it, SQLite's JSON_VALID
check fails) and the job that wrote them dies with a database error instead of its result.
"""
from __future__ import annotations

import math

from django.core.serializers.json import DjangoJSONEncoder


def finite(value):
    """`value` with every non-finite float (in any nesting of dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class FiniteJSONEncoder(DjangoJSONEncoder):
    """The encoder of every JSONField the engine writes to."""

    def encode(self, o) -> str:
        return super().encode(finite(o))
