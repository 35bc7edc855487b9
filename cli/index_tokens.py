"""``stair-es index tokens FILE.jsonl``: token maps encoded elsewhere into an index (no encoder runs).

The index must know whose tokens it holds (model id + vocabulary hash in ``_meta``), so the model is
named: ``--model DIR`` (its manifest only), ``--model-id`` with ``--vocab-hash``, or ``--model-id``
alone when the index already exists or the model registry knows that id.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from stair_es.engine.config import DEFAULT_TOKENS_INDEX
from stair_es_cli.common import connect_backend, echo_err


def token_model(kw: dict[str, Any], backend: Any, index: str) -> Any:
    """The ModelMeta of the tokens in the file, from the flags (checked against the index later)."""
    from stair_es.engine import ModelMeta
    from stair_es.errors import UsageError

    if kw["model_path"] is not None:
        from stair_es.runtime import Manifest

        if kw["model_id"] or kw["vocab_hash"]:
            raise UsageError("give --model DIR or --model-id/--vocab-hash, not both")
        manifest = Manifest.read(kw["model_path"])
        return ModelMeta(
            manifest.model_id, manifest.vocab_hash, manifest.vocab_size, str(Path(manifest.root).resolve())
        )
    model_id, vocab_hash = kw["model_id"], kw["vocab_hash"]
    current = None
    if backend is not None and backend.index_exists(index):
        current = backend.index_meta(index).model
    if model_id is None:
        if current is None:
            raise UsageError(
                "whose tokens are these? pass --model DIR (its manifest.json) or --model-id ID --vocab-hash HASH"
            )
        return current
    if vocab_hash is None and current is not None and current.model_id == model_id:
        return current
    if vocab_hash is None:
        from stair_es.runtime.registry import registered

        hashes = {entry["vocab_hash"] for entry in registered(model_id)}
        if len(hashes) != 1:
            raise UsageError(
                f"a new index needs the vocabulary of '{model_id}' too: --vocab-hash HASH (in the model's "
                "manifest.json), or --model DIR"
            )
        vocab_hash = hashes.pop()
    return ModelMeta(model_id, vocab_hash)


def run_tokens(
    file: Path,
    kw: dict[str, Any],
    failure_lines: Callable[[dict[str, Any], Any], Callable[[dict[str, Any]], None]],
    exit_some_failed: int,
) -> None:
    from stair_es.engine import IndexerOptions
    from stair_es.ingest import EngineSink, Ledger, MemorySink, PipelineOptions, Progress, RunReport
    from stair_es.ingest.tokens import index_tokens, read_token_records
    from stair_es_cli.index_target import IndexTarget

    report = RunReport(index="", kind="tokens", dry_run=kw["dry_run"])
    backend = None if kw["dry_run"] else connect_backend(kw["connection"])
    target = IndexTarget.plan(kw, backend, DEFAULT_TOKENS_INDEX, find_model=False)
    probe = target.explicit_index or target.alias or target.default_index
    model = token_model(kw, backend, probe)
    report.index = target.name_for(model.model_id)
    echo_err(f"tokens of model {model.model_id} (vocab {model.vocab_hash[:12]}); no encoder runs")
    if backend is None:
        sink: Any = MemorySink(target.index)
    else:
        target.check_existing(kw["compact"], kw["recreate"])
        relax: dict[str, Any] = {"relax_after": None} if kw["keep_settings"] else {}
        options = IndexerOptions(chunk_size=kw["bulk_docs"], max_chunk_bytes=kw["bulk_bytes"], **relax)
        sink = EngineSink(backend, target.index, options, compact=kw["compact"])
        target.state = sink.prepare(
            model.model_id, model.vocab_hash, model.vocab_size, kw["recreate"], model_path=model.path
        )
        echo_err(f"index '{target.index}' on {backend.info.describe()}: {target.state}")
    total = sum(1 for line in file.open("rb") if line.strip())
    progress = Progress(report, total, sys.stderr, tty=sys.stderr.isatty()) if kw["progress"] else None
    ledger = Ledger(report, kw["failures_path"], failure_lines(kw, progress))
    pipeline = PipelineOptions(skip_existing=kw["skip_existing"] and not kw["recreate"])
    try:
        index_tokens(
            read_token_records(file, kw["kind"]), sink, report, ledger, options=pipeline, progress=progress
        )
    except KeyboardInterrupt:
        report.interrupted = True
        for line in report.summary_lines():
            echo_err(line)
        raise
    finally:
        ledger.close()
        try:
            if backend is not None:
                target.finish(report)
        finally:
            if backend is not None:
                backend.close()
    if progress is not None:
        progress.close()
    for line in report.summary_lines() + target.messages:
        echo_err(line)
    if kw["as_json"]:
        click.echo(json.dumps(report.to_dict(), indent=2))
    if report.failed:
        sys.exit(exit_some_failed)
