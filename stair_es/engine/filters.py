"""The one filter language of the CLI (``--filter`` / ``--filter-json``) and the HTTP API
(``filter`` / ``filter_json``): ``FIELD=VALUE`` (repeat a field for OR), ``FIELD!=VALUE``,
``FIELD>=N`` (also ``>``, ``<``, ``<=``), plus raw query-DSL JSON. No heavy imports: the CLI
parses filters before it connects."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from stair_es.errors import UsageError

FILTER_FORMS = "FIELD=VALUE, FIELD!=VALUE or FIELD>=N (also >, <, <=)"
FILTER_HELP = "FIELD=VALUE (repeat a field for OR), FIELD!=VALUE, FIELD>=N (also >, <, <=)"
_FILTER_RE = re.compile(r"^([^=<>!]+?)\s*(>=|<=|!=|=|>|<)(.*)$")
_RANGE_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}


def filter_value(text: str) -> Any:
    """JSON scalars (numbers, true/false, quoted strings) as such; anything else as a string."""
    text = text.strip()
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, str, bool)) else text


def parse_filters(
    expressions: Sequence[str], raw_json: str | None, *, flag: str = "filter", json_flag: str = "filter_json"
) -> list[dict[str, Any]]:
    """Filter clauses for :func:`stair_es.engine.query.build_query`; ``flag``/``json_flag`` name
    the inputs in error messages (``--filter`` on the CLI, ``filter`` in the HTTP API)."""
    from stair_es.engine.query import normalize_filters

    terms: dict[str, list[Any]] = {}
    clauses: list[dict[str, Any]] = []
    for expression in expressions:
        match = _FILTER_RE.match(expression)
        if not match or not match.group(1).strip():
            raise UsageError(f"{flag} {expression!r}: expected {FILTER_FORMS}")
        name, op, value = match.group(1).strip(), match.group(2), filter_value(match.group(3))
        if op == "=":
            terms.setdefault(name, []).append(value)
        elif op == "!=":
            clauses.append({"bool": {"must_not": [{"term": {name: value}}]}})
        else:
            clauses.append({"range": {name: {_RANGE_OPS[op]: value}}})
    for name, values in terms.items():
        clauses.insert(0, {"term": {name: values[0]}} if len(values) == 1 else {"terms": {name: values}})
    if raw_json:
        try:
            parsed = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{json_flag} is not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(parsed, (dict, list)):
            raise UsageError(f"{json_flag} must be a JSON object (a query clause) or a list of them")
        try:
            clauses += normalize_filters(parsed)
        except TypeError as exc:
            raise UsageError(f"{json_flag}: {exc}") from exc
    return clauses
