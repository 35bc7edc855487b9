"""Ingestion: find files (folders, manifests, sidecars, text corpora), hash them, skip what the index
already holds, encode the rest and bulk-load them, accounting for every item.

Typical use (what ``stair-es index images`` does)::

    items = select_shard(discover_images(["photos/"]), shard_id=0, num_shards=1)
    report = RunReport(index="photos")
    ledger = Ledger(report, "failures.jsonl")
    index_images(list(items), encoder, EngineSink(backend, "photos"), report, ledger)
    assert report.balanced   # indexed + skipped + failed == discovered

Nothing here imports torch.
"""

from stair_es.ingest.discover import (
    CAPTION_SOURCES,
    IMAGE_EXTENSIONS,
    ImageItem,
    TextItem,
    discover_images,
    read_text_corpus,
    select_shard,
    shard_of,
    walk_image_files,
)
from stair_es.ingest.pipeline import (
    PipelineOptions,
    content_hash,
    file_content_hash,
    index_images,
    index_texts,
    load_file,
)
from stair_es.ingest.report import FAILURE_KINDS, Ledger, Progress, RunReport, classify_decode_error
from stair_es.ingest.sink import EngineSink, MemorySink, Sink, SinkResult

__all__ = [
    "CAPTION_SOURCES",
    "FAILURE_KINDS",
    "IMAGE_EXTENSIONS",
    "EngineSink",
    "ImageItem",
    "Ledger",
    "MemorySink",
    "PipelineOptions",
    "Progress",
    "RunReport",
    "Sink",
    "SinkResult",
    "TextItem",
    "classify_decode_error",
    "content_hash",
    "discover_images",
    "file_content_hash",
    "index_images",
    "index_texts",
    "load_file",
    "read_text_corpus",
    "select_shard",
    "shard_of",
    "walk_image_files",
]
