"""``stair-es alias``: list aliases, or point one at an index in one atomic step (zero-downtime swaps)."""

from __future__ import annotations

import click

from stair_es_cli.common import EngineOptions, connect_backend, connection_options, echo_err


@click.command()
@click.argument("name", required=False)
@click.argument("index", required=False)
@click.option("--remove", is_flag=True, help="Remove the alias NAME (its indexes stay).")
@click.option(
    "--replace-index",
    is_flag=True,
    help="NAME is a plain index: delete it and create the alias in the same atomic request.",
)
@connection_options
def alias(
    name: str | None, index: str | None, remove: bool, replace_index: bool, connection: EngineOptions
) -> None:
    """List aliases (no arguments), or point alias NAME at INDEX atomically.

    \b
    Searches, the model check and `stair-es search` without --model follow the alias:
      stair-es index images ~/photos --alias photos --model new-model/   # builds photos-<model id>, moves photos
      stair-es alias photos photos-old-model                             # roll back
    """
    from stair_es.engine.aliases import index_names, remove_alias, swap_alias
    from stair_es.errors import StairError, UsageError

    if remove and (name is None or index is not None):
        raise UsageError("--remove takes the alias name only: stair-es alias NAME --remove")
    if not remove and name is not None and index is None:
        raise UsageError("give the index too: stair-es alias NAME INDEX (or NAME --remove)")
    backend = connect_backend(connection)
    try:
        if remove:
            left = remove_alias(backend, name)  # type: ignore[arg-type]
            click.echo(f"removed alias '{name}' (from {', '.join(left)})")
            return
        if name is not None and index is not None:
            meta = backend.index_meta(index)
            previous = swap_alias(backend, name, index, replace_index=replace_index)
            was = f" (was {', '.join(previous)})" if previous else ""
            click.echo(f"alias '{name}' -> '{index}' (model {meta.model.model_id}){was}")
            return
        rows = []
        for concrete, aliases in sorted(index_names(backend).items()):
            for alias_name in aliases:
                try:
                    model = backend.index_meta(concrete).model.model_id
                except StairError:
                    model = "(not a stair-es index)"
                rows.append((alias_name, concrete, model, backend.count(concrete)))
        if not rows:
            echo_err("no aliases (stair-es index ... --alias NAME creates one)")
            return
        width = max(len(r[0]) for r in rows)
        for alias_name, concrete, model, count in sorted(rows):
            click.echo(f"{alias_name:<{width}} -> {concrete}  (model {model}, {count} documents)")
    finally:
        backend.close()
