"""How the API reads request bodies: every JSON body through experts.ml.safe_json.

Kept apart from moecollab_site/api.py: DRF reads DEFAULT_CONTENT_NEGOTIATION_CLASS while it
defines APIView, so this module must not import rest_framework.views itself.
"""
from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation

from experts.ml import safe_json


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser reading through experts.ml.safe_json: a body nested 100,000 levels
    deep, a 5,000-digit integer, 1e999 or a lone surrogate is a 400 naming where, not a 500
    from the parser, the database or the tokenizer."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return safe_json.loads(stream.read().decode(encoding), what="the request body")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except safe_json.JSONRefused as exc:
            raise ParseError(str(exc)) from None


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that every JSON body is read by the JSONParser above.

    Views name rest_framework's JSONParser in parser_classes, and so does DRF's own token view;
    swapping it here covers them all, where DEFAULT_PARSER_CLASSES only reaches views that name
    no parsers.
    """

    def select_parser(self, request, parsers_):
        parser = super().select_parser(request, parsers_)
        if isinstance(parser, parsers.JSONParser) and not isinstance(parser, JSONParser):
            return JSONParser()
        return parser
