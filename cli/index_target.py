"""Which index ``stair-es index`` writes to, with which model, and what happens when the run ends.

- ``--index`` (or ``STAIR_ES_INDEX``), else the command's default; with ``--alias photos`` a new
  index ``photos-<model id>`` is built beside the live one and the alias moves to it atomically
  when the run ends without failures (re-indexing with a new model without downtime); an alias
  that does not exist yet is created after any run that indexed something.
- Without ``--model`` an existing index (or alias) is extended with the model it was built with.
- ``--compact`` cannot change an existing index: refused unless the index already is compact.
- An index this run created and left empty (every item failed) is deleted again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from stair_es.engine.config import DEFAULT_IMAGE_INDEX
from stair_es_cli.common import model_for_index


@dataclass
class IndexTarget:
    backend: Any
    model_path: Path | None
    index: str = ""
    alias: str | None = None
    explicit_index: str | None = None
    default_index: str = DEFAULT_IMAGE_INDEX
    state: str = ""  # created | recreated | existing (EngineSink.prepare)
    messages: list[str] = field(default_factory=list)

    @classmethod
    def plan(
        cls, kw: dict[str, Any], backend: Any, default_index: str, find_model: bool = True
    ) -> IndexTarget:
        from stair_es.errors import UsageError

        alias = kw.get("alias")
        index = kw.get("index_name")
        if alias and index and _from_env("index_name"):
            index = None  # STAIR_ES_INDEX names what searches use (the alias); --alias builds a new index
        if alias and kw.get("num_shards", 1) > 1:
            raise UsageError(
                "--alias moves the alias when a run ends; with --num-shards give every shard the same "
                "--index NAME and run `stair-es alias ALIAS NAME` once all are done"
            )
        if alias and index == alias:
            raise UsageError(f"--index must differ from --alias '{alias}' (the alias points at the index)")
        target = cls(
            backend, kw.get("model_path"), alias=alias, explicit_index=index, default_index=default_index
        )
        existing = index or alias or default_index
        if (
            find_model
            and target.model_path is None
            and backend is not None
            and backend.index_exists(existing)
        ):
            target.model_path = model_for_index(None, backend, existing)
        return target

    def name_for(self, model_id: str) -> str:
        from stair_es.engine.aliases import model_slug

        if self.explicit_index:
            self.index = self.explicit_index
        elif self.alias:
            self.index = f"{self.alias}-{model_slug(model_id)}"
        else:
            self.index = self.default_index
        return self.index

    def check_existing(self, compact: bool, recreate: bool) -> None:
        from stair_es.errors import UsageError

        if not compact or recreate or not self.backend.index_exists(self.index):
            return
        meta = self.backend.index_meta(self.index)
        if meta.tokens_in_source:
            raise UsageError(
                f"--compact applies to new indexes only, and index '{self.index}' exists with token maps "
                "in _source: drop --compact to add to it, or rebuild it compact with --recreate "
                "(or beside it with --alias)"
            )

    def finish(self, report: Any) -> None:
        """Delete an index this run created and left empty; move the alias after a clean run."""
        if self.state in ("created", "recreated") and report.indexed == 0 and report.skipped_existing == 0:
            if self.backend.count(self.index) == 0:
                self.backend.delete_index(self.index)
                self.messages.append(f"index '{self.index}' was left empty by this run: deleted it again")
                return
        if not self.alias:
            return
        from stair_es.engine.aliases import alias_holders, is_concrete_index, swap_alias

        live = alias_holders(self.backend, self.alias)
        # a live alias moves only after a clean run; a new one is created anyway (nothing to protect)
        if report.interrupted or report.stopped or (report.failed and live):
            why = (
                "interrupted"
                if report.interrupted
                else "stopped early"
                if report.stopped
                else f"{report.failed} items failed"
            )
            self.messages.append(
                f"alias '{self.alias}' not moved ({why}): fix and run again, or move it anyway with "
                f"`stair-es alias {self.alias} {self.index}`"
            )
            return
        if is_concrete_index(self.backend, self.alias):
            self.messages.append(
                f"alias '{self.alias}' not moved: '{self.alias}' is an index, not an alias; "
                f"`stair-es alias {self.alias} {self.index} --replace-index` deletes it and points the "
                "alias at the new index in one atomic step"
            )
            return
        previous = swap_alias(self.backend, self.alias, self.index)
        was = (
            f" (was {', '.join(previous)}; still there: delete it when no longer needed)" if previous else ""
        )
        self.messages.append(f"alias '{self.alias}' -> '{self.index}'{was}")


def _from_env(param: str) -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    source = ctx.get_parameter_source(param)
    return source is not None and source.name == "ENVIRONMENT"
