"""Index names and aliases: "did you mean" for a mistyped index, and zero-downtime re-indexing.

Re-indexing a collection with a new model builds ``photos-<model>`` beside the live index and then
moves the alias ``photos`` to it in one ``_aliases`` request (atomic on both engines), so searches
never see a half-built or missing index; searches and the model check follow the alias.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from stair_es.errors import EngineError, UsageError


class IndexNotFoundError(UsageError, EngineError):
    """An index or alias name that does not exist (exit 2: usually a typo; HTTP 404 in serve)."""

    status = 404


def index_names(backend: Any) -> dict[str, list[str]]:
    """Visible indexes and the aliases on each (``{index: [alias, ...]}``); hidden ones left out."""
    from stair_es.engine.core import index_aliases

    return index_aliases(backend._call("listing indexes", backend.client.indices.get_alias, index="*"))


def not_found(index: str, names: dict[str, list[str]], where: str) -> IndexNotFoundError:
    """The one line for a missing index, with the close names (or what exists) as the fix."""
    known = sorted(set(names) | {a for aliases in names.values() for a in aliases})
    close = difflib.get_close_matches(index, known, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    elif known:
        shown = ", ".join(known[:8]) + (f" and {len(known) - 8} more" if len(known) > 8 else "")
        hint = f"indexes here: {shown}"
    else:
        hint = "there are no indexes yet (create one with stair-es index)"
    return IndexNotFoundError(f"index '{index}' does not exist on {where}: {hint}")


def model_slug(model_id: str) -> str:
    """A model id as an index-name suffix (lowercase; letters, digits, '-', '_', '.')."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", model_id.lower()).strip("-._")
    return slug or "model"


def alias_holders(backend: Any, alias: str) -> list[str]:
    """Indexes the alias points at now ([] when it does not exist)."""
    return sorted(name for name, aliases in index_names(backend).items() if alias in aliases)


def is_concrete_index(backend: Any, name: str) -> bool:
    return name in index_names(backend)


def swap_alias(backend: Any, alias: str, index: str, *, replace_index: bool = False) -> list[str]:
    """Point ``alias`` at ``index`` only, atomically; returns the indexes it left.

    A concrete index named like the alias is refused unless ``replace_index``: then it is deleted in
    the same atomic request (``remove_index``), which is how a plain index moves behind an alias.
    """
    names = index_names(backend)
    if index not in names:
        raise not_found(index, names, backend.info.describe())
    if alias in names:
        if not replace_index:
            raise UsageError(
                f"'{alias}' is an index, not an alias: `stair-es alias {alias} {index} --replace-index` "
                f"deletes index '{alias}' and points the alias at '{index}' in one atomic step"
            )
        actions: list[dict[str, Any]] = [{"remove_index": {"index": alias}}]
        previous = [alias]
    else:
        previous = [name for name, aliases in names.items() if alias in aliases and name != index]
        actions = [{"remove": {"index": name, "alias": alias}} for name in previous]
    actions.append({"add": {"index": index, "alias": alias}})
    backend._call(
        f"moving alias '{alias}' to '{index}'",
        backend.client.indices.update_aliases,
        body={"actions": actions},
    )
    return previous


def remove_alias(backend: Any, alias: str) -> list[str]:
    holders = alias_holders(backend, alias)
    if not holders:
        raise UsageError(f"there is no alias '{alias}'")
    actions = [{"remove": {"index": name, "alias": alias}} for name in holders]
    backend._call(
        f"removing alias '{alias}'", backend.client.indices.update_aliases, body={"actions": actions}
    )
    return holders
