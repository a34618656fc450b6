"""JSON bodies the API accepts: small and shallow. A deep document (thousands of nested
arrays) made Python's json raise RecursionError, which answered 500; here it is a 400
in the API's error shape, like any body that is not the JSON an operation expects."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 16  # the deepest request of the API is 2 levels


def depth(value: Any, limit: int) -> int:
    """The nesting depth of a parsed JSON value, counting no further than `limit` + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            return level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


class ShallowJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested too deeply; at most {MAX_DEPTH} levels are accepted.") from None
        if depth(data, MAX_DEPTH) > MAX_DEPTH:
            raise ParseError(f"JSON nested too deeply; at most {MAX_DEPTH} levels are accepted.")
        return data
