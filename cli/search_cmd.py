"""``stair-es search`` (text, image or token-map queries) and ``stair-es explain`` (a readable token map).

The default output is a table for people (rank, score, path or caption, the matched tokens that
made the score); ``--json`` is for scripts. Library imports stay inside the commands (fast --help).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from stair_es.engine.config import DEFAULT_IMAGE_INDEX, DEFAULT_TEXT_INDEX
from stair_es.engine.filters import FILTER_HELP
from stair_es.engine.modes import TEXT_ONLY_MODES, USER_MODES
from stair_es_cli.common import (
    EngineOptions,
    connect_backend,
    connection_options,
    echo_err,
    index_option,
    load_runtime_encoder,
    model_for_index,
    model_option,
    provider_option,
)

EXIT_NO_HITS = 1
MODE_CHOICES = tuple(m for m in USER_MODES if m != "hybrid")  # hybrid is --hybrid
TARGET_INDEX = {"image": DEFAULT_IMAGE_INDEX, "both": DEFAULT_IMAGE_INDEX, "text": DEFAULT_TEXT_INDEX}

SEARCH_EXIT_HELP = f"""
\b
Exit status:
  0  hits printed    {EXIT_NO_HITS}  no hits (like grep)    2  bad arguments or input
  3  engine error    5  the index was built with another model    6  missing dependency
"""

_provider_option = provider_option()


def _image_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--image must be a readable regular file: a FIFO or a device would block the read forever."""
    if value is None:
        return None
    from stair_es.runtime.images import special_file_reason

    reason = special_file_reason(value)
    if reason is not None:
        from stair_es.errors import UsageError

        raise UsageError(f"--image {value}: {reason}")
    return value


def strict_json(data: Any) -> str:
    """JSON that every parser accepts: a non-finite float (an overflowed score) becomes null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2, ensure_ascii=False, default=str, allow_nan=False)


# --------------------------------------------------------------------------------------------
# filters


def parse_filters(expressions: tuple[str, ...], raw_json: str | None) -> list[dict[str, Any]]:
    """``--filter`` / ``--filter-json`` (the language: :mod:`stair_es.engine.filters`)."""
    from stair_es.engine.filters import parse_filters as parse

    return parse(expressions, raw_json, flag="--filter", json_flag="--filter-json")


# --------------------------------------------------------------------------------------------
# formatting


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((120, 24)).columns, 200))


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _short_path(where: str, width: int) -> str:
    """Relative to the working directory when below it; long paths keep their tail (the file name)."""
    import os

    if os.path.isabs(where):
        try:
            rel = os.path.relpath(where)
            where = rel if not rel.startswith("..") else where
        except ValueError:  # another drive (Windows)
            pass
    return where if len(where) <= width else "…" + where[-(width - 1) :]


def describe_item(source: dict[str, Any], width: int = 60) -> tuple[str, str | None]:
    """What a hit is, for people: (path or URL, caption shown below it) or (caption, None)."""
    where = source.get("path") or source.get("url")
    caption = source.get("caption")
    if where:
        return _short_path(str(where), width), (f"“{caption}”" if caption else None)
    return (_clip(f"“{caption}”", width) if caption else "(no path or caption stored)"), None


def format_tokens(rows: list[Any], limit: int) -> str:
    shown = ", ".join(f"{r.token} {r.contribution:.3g}" for r in rows[:limit])
    more = len(rows) - limit
    return shown + (f" (+{more} more)" if more > 0 else "") if rows else "-"


def render_hits(result: Any, top_tokens: int, full: bool, offset: int = 0) -> str:
    """The table: rank, score, item, top matched tokens (and, with ``full``, every contribution)."""
    width = _width()
    paths = [str(h.source.get("path") or h.source.get("url") or "") for h in result.hits]
    item_width = max(
        12, min(max((len(_short_path(p, 60)) for p in paths), default=12), 60, (width - 20) // 2)
    )
    if any(not p for p in paths):  # caption-only hits use the item column for the caption
        item_width = max(24, min(60, (width - 20) // 2))
    lines = [f"{'#':>3}  {'score':>9}  {'item':<{item_width}}  matched tokens (contribution)"]
    for rank, hit in enumerate(result.hits, offset + 1):
        tokens = format_tokens(hit.explanation, top_tokens)
        item, caption = describe_item(hit.source, item_width)
        line = f"{rank:>3}  {hit.score:>9.4f}  {item:<{item_width}}  "
        lines.append(line + _clip(tokens, max(width - len(line), 20)))
        if caption:
            lines.append(f"{'':>16}{_clip(caption, width - 16)}")
        if full and hit.explanation:
            total = hit.explained_score or 1.0
            lines.append(f"{'':>16}{'token':<20} {'query':>9} {'document':>9} {'contribution':>12}  share")
            for row in hit.explanation:
                lines.append(
                    f"{'':>16}{_clip(row.token, 20):<20} {row.query_weight:>9.4f} {row.doc_weight:>9.4f} "
                    f"{row.contribution:>12.5f}  {100 * row.contribution / total:5.1f}%"
                )
            note = "" if result.plan.mode != "hybrid" else " (the rest of the hybrid score is BM25)"
            lines.append(
                f"{'':>16}sum of contributions {hit.explained_score:.5f} vs score {hit.score:.5f}{note}"
            )
    return "\n".join(lines)


def render_map(title: str, vec: Any, top: int | None, bar_width: int = 30) -> str:
    """A token->weight map a person can read: sorted, share of the total weight, a bar."""
    weights = [float(w) for w in vec.weights]
    total = sum(weights) or 1.0
    heaviest = weights[0] if weights else 1.0
    count = len(weights) if top is None else min(top, len(weights))
    lines = [f"{title}: {len(weights)} tokens, total weight {total:.4g}"]
    if not weights:
        lines.append("  (no token with a positive weight)")
        return "\n".join(lines)
    lines.append(f"  {'token':<20} {'weight':>9}  {'share':>6}")
    for token, weight in zip(vec.tokens[:count], weights[:count]):
        bar = "█" * max(1, round(bar_width * weight / heaviest))
        lines.append(f"  {_clip(token, 20):<20} {weight:>9.4f}  {100 * weight / total:5.1f}%  {bar}")
    rest = len(weights) - count
    if rest > 0:
        share = 100 * sum(weights[count:]) / total
        lines.append(f"  (+{rest} more tokens holding {share:.1f}% of the weight; --all lists them)")
    return "\n".join(lines)


def map_to_dict(source: str, vec: Any, top: int | None) -> dict[str, Any]:
    weights = [float(w) for w in vec.weights]
    total = sum(weights)
    rows = list(zip(vec.tokens, weights))[: None if top is None else top]
    return {
        "input": source,
        "tokens": len(weights),
        "total_weight": total,
        "top": [{"token": t, "weight": w, "share": w / total if total else 0.0} for t, w in rows],
    }


# --------------------------------------------------------------------------------------------
# search


@click.command(epilog=SEARCH_EXIT_HELP)
@click.argument("query", required=False)
@click.option("--image", default=None, callback=_image_file, help="Query by image (a readable image file).")
@click.option(
    "--tokens",
    "tokens_json",
    default=None,
    help="Query by a token->weight JSON map, e.g. '{\"dog\": 1.2}' (no model needed).",
)
@click.option(
    "-k",
    "--top",
    "k",
    type=click.IntRange(min=1, max=10_000),
    default=10,
    show_default=True,
    help="Hits to show.",
)
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip this many hits."
)
@index_option("Index to search", f"{DEFAULT_IMAGE_INDEX}, or {DEFAULT_TEXT_INDEX} for --target text")
@click.option(
    "--target",
    type=click.Choice(["image", "text", "both"]),
    default="image",
    show_default=True,
    help="Token field to match: image (text->image, image->image), text (text->text, image->text), both.",
)
@click.option(
    "--mode",
    type=click.Choice(MODE_CHOICES),
    default="exact",
    show_default=True,
    help="exact: dot product over all query tokens; two-phase: heaviest tokens, then the rest for the "
    "top documents (for long queries: ~4x faster on OpenSearch 2.x, ~1.5x on 3.x); "
    "native: the engine's own sparse query (exact scores); native-pruned: Elasticsearch 9's "
    "sparse_vector query with its token pruning (approximate); bm25: captions only.",
)
@click.option("--hybrid", is_flag=True, help="Add BM25 on captions to the sparse score (text queries).")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help=f"{FILTER_HELP}, e.g. modality=image.",
)
@click.option("--filter-json", default=None, help="Raw filter clause(s) as JSON (query DSL).")
@click.option(
    "--max-clauses",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Most query tokens sent (heaviest first; the engine caps clauses at 1024 by default).",
)
@click.option(
    "--top-tokens", type=click.IntRange(min=0), default=4, show_default=True, help="Tokens per row."
)
@click.option("--explain", "full", is_flag=True, help="Show every matched token's contribution per hit.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (hits with id, score, source, explanation)."
)
@click.option("--show-query", is_flag=True, help="Print the request body instead of searching.")
@model_option(default_help="the model the index was built with")
@_provider_option
@connection_options
def search(
    query: str | None,
    image: str | None,
    tokens_json: str | None,
    k: int,
    offset: int,
    index_name: str | None,
    target: str,
    mode: str,
    hybrid: bool,
    filters: tuple[str, ...],
    filter_json: str | None,
    max_clauses: int,
    top_tokens: int,
    full: bool,
    as_json: bool,
    show_query: bool,
    model_path: Path | None,
    provider: str,
    connection: EngineOptions,
) -> None:
    """Search with a text QUERY, an --image FILE, or a --tokens map.

    \b
    Examples:
      stair-es search "a dog on a beach"
      stair-es search --image photo.jpg -k 20 --filter modality=image
      stair-es search "red bicycle" --hybrid --explain
      stair-es search "a red bicycle" --target text --index stair-texts --json
    """
    from stair_es.engine import QueryOptions, Searcher
    from stair_es.errors import UsageError

    given = [x for x in (query, image, tokens_json) if x is not None]
    if len(given) != 1:
        raise UsageError('give exactly one query: a text ("..."), --image FILE or --tokens JSON')
    engine_mode, native_prune = USER_MODES[mode]
    if hybrid:
        if mode not in ("exact",):
            raise UsageError("--hybrid combines BM25 with the exact sparse score; drop --mode")
        engine_mode = "hybrid"
    if engine_mode in TEXT_ONLY_MODES and query is None:
        raise UsageError(
            f"{'--hybrid' if hybrid else '--mode bm25'} needs a text query (BM25 runs on captions)"
        )
    filter_clauses = parse_filters(filters, filter_json) or None
    tokens = _parse_tokens(tokens_json) if tokens_json is not None else None
    index = index_name or TARGET_INDEX[target]

    backend = connect_backend(connection)
    try:
        encoder = None
        if tokens is None and engine_mode != "bm25":
            encoder = load_runtime_encoder(model_for_index(model_path, backend, index), provider)
        searcher = Searcher(
            backend, index, encoder, options=QueryOptions(max_clauses=max_clauses, native_prune=native_prune)
        )
        kwargs: dict[str, Any] = {
            "k": k,
            "offset": offset,
            "filter": filter_clauses,
            "mode": engine_mode,
            "target": target,
        }
        inputs: dict[str, Any] = (
            {"image": image}
            if image is not None
            else {"tokens": tokens}
            if tokens is not None
            else {"text": query}
        )
        if show_query:
            plan = searcher.plan(**inputs, **kwargs)
            click.echo(json.dumps(plan.body, indent=2, ensure_ascii=False))
            return
        result = searcher.search(**inputs, **kwargs)
        label = f"image {image}" if image else (f'"{query}"' if query is not None else "token map")
        if as_json:
            out = {
                "query": {
                    "text": query,
                    "image": image,
                    "tokens": len(result.query_tokens) if tokens else None,
                },
                "index": index,
                "target": target,
                "engine": backend.info.describe(),
                **result.to_dict(top_tokens=None if full else max(top_tokens, 10)),
            }
            click.echo(strict_json(out))
        else:
            what = "BM25 on captions" if engine_mode == "bm25" else f"{len(result.query_tokens)} query tokens"
            header = (
                f"{label} -> {what}, mode {result.plan.mode}, "
                f"index '{index}' on {backend.info.describe()}, {result.took_ms:.1f} ms"
            )
            click.echo(header)
            for note in result.plan.notes:
                click.echo(f"note: {note}")
            if result.hits:
                click.echo(render_hits(result, top_tokens, full, offset))
            else:
                click.echo("no hits")
        if not result.hits:
            sys.exit(EXIT_NO_HITS)
    finally:
        backend.close()


def _parse_tokens(text: str) -> Any:
    from stair_es.engine.search import checked_query_tokens
    from stair_es.errors import UsageError

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--tokens is not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise UsageError('--tokens must be a JSON object of token -> number, e.g. {"dog": 1.5}')
    vec = checked_query_tokens({str(t): w for t, w in data.items()}, "--tokens")
    if len(vec) == 0:
        raise UsageError("--tokens has no token with a positive weight")
    return vec


# --------------------------------------------------------------------------------------------
# explain


@click.command()
@click.option("--text", default=None, help="A text to explain.")
@click.option("--image", default=None, callback=_image_file, help="An image to explain.")
@click.option(
    "--top", "top", type=click.IntRange(min=1), default=20, show_default=True, help="Tokens listed."
)
@click.option("--all", "show_all", is_flag=True, help="List every token.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@model_option()
@_provider_option
def explain(
    text: str | None,
    image: str | None,
    top: int,
    show_all: bool,
    as_json: bool,
    model_path: Path | None,
    provider: str,
) -> None:
    """Show the token->weight map of a --text or an --image (both: also how they match).

    Weights are what the model puts in the index (a text's query vector, an image's document
    vector); share is the fraction of the total weight, the bar is relative to the heaviest token.
    With both --text and --image the dot product (the search score) is split into its tokens.
    """
    from stair_es.errors import UsageError

    if text is None and image is None:
        raise UsageError('give --text "..." and/or --image FILE')
    encoder = load_runtime_encoder(model_path, provider)
    limit = None if show_all else top
    maps: dict[str, tuple[str, Any]] = {}
    if text is not None:
        maps["text"] = (text, encoder.encode_texts([text])[0])
    if image is not None:
        maps["image"] = (image, encoder.encode_images([image])[0])
    match = None
    if len(maps) == 2:
        rows = maps["text"][1].contributions(maps["image"][1])
        score = sum(r[3] for r in rows)
        match = {
            "score": score,
            "matched_tokens": len(rows),
            "contributions": [
                {
                    "token": t,
                    "text_weight": a,
                    "image_weight": b,
                    "contribution": c,
                    "share": c / score if score else 0,
                }
                for t, a, b, c in rows[: limit if limit is not None else len(rows)]
            ],
        }
    if as_json:
        out: dict[str, Any] = {"model": encoder.model_id}
        out.update({kind: map_to_dict(src, vec, limit) for kind, (src, vec) in maps.items()})
        if match is not None:
            out["match"] = match
        click.echo(strict_json(out))
        return
    echo_err(f"model {encoder.model_id} on {encoder.provider_info('text').describe()}")
    blocks = [
        render_map(f'{kind} "{src}"' if kind == "text" else f"image {src}", vec, limit)
        for kind, (src, vec) in maps.items()
    ]
    click.echo("\n\n".join(blocks))
    if match is not None:
        click.echo(
            f"\nscore (text · image) = {match['score']:.5f} over {match['matched_tokens']} shared tokens"
        )
        click.echo(f"  {'token':<20} {'text':>9} {'image':>9} {'contribution':>12}  share")
        for row in match["contributions"]:
            click.echo(
                f"  {_clip(row['token'], 20):<20} {row['text_weight']:>9.4f} {row['image_weight']:>9.4f} "
                f"{row['contribution']:>12.5f}  {100 * row['share']:5.1f}%"
            )
