"""Bulk-load settings (refresh off, no replicas) that survive a crash.

A large load turns refresh off and replicas to 0, and puts them back at the end. If the end never
comes (the process is killed with SIGKILL, the engine dies and the restore fails), the index used to
keep ``refresh_interval: -1`` for good: later writes stayed invisible and a later load even took
``-1`` for the value to restore. So the values to restore are written to the index's ``_meta``
*before* anything is changed; every load first restores what such a note says, a load that finds
another load's note keeps its original values, and ``stair-es doctor`` reports a note it finds.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

MARKER = "stair_es_bulk_load"  # key in the mapping's _meta
RELAXED: dict[str, Any] = {"refresh_interval": "-1", "number_of_replicas": 0}
KEYS = tuple(RELAXED)


def new_marker(current: Mapping[str, Any]) -> dict[str, Any]:
    """The note: settings to restore (``None``: unset, back to the default) and who changed them."""
    return {
        "previous": {key: current.get(key) for key in KEYS},
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def marker_of(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    marker = meta.get(MARKER)
    return (
        dict(marker) if isinstance(marker, Mapping) and isinstance(marker.get("previous"), Mapping) else None
    )


def describe_marker(marker: Mapping[str, Any]) -> str:
    previous = ", ".join(f"{k} {v if v is not None else 'default'}" for k, v in marker["previous"].items())
    return f"a load (pid {marker.get('pid')} on {marker.get('host')}, since {marker.get('since')}) left {previous} to restore"


class LoadSettings:
    """Relax and restore one index's settings around a bulk load, the note kept in ``_meta``."""

    def __init__(self, backend: Any, index: str) -> None:
        self.backend = backend
        self.index = index
        self.previous: dict[str, Any] | None = None

    def recover(self) -> dict[str, Any] | None:
        """Restore what an interrupted load left relaxed; returns its note (None: nothing to do)."""
        meta = self.backend.mapping_meta(self.index)
        marker = marker_of(meta)
        if marker is None:
            return None
        self.backend.put_settings(self.index, marker["previous"])
        meta.pop(MARKER, None)
        self.backend.put_mapping_meta(self.index, meta)
        logger.warning("index '%s': restored the settings %s", self.index, describe_marker(marker))
        return marker

    def relax(self) -> None:
        meta = self.backend.mapping_meta(self.index)
        marker = marker_of(meta)
        if marker is None:
            marker = new_marker(self.backend.get_settings(self.index))
            self.backend.put_mapping_meta(self.index, {**meta, MARKER: marker})
        self.previous = dict(marker["previous"])  # another load's note: its originals, never its -1
        self.backend.put_settings(self.index, RELAXED)

    def restore(self) -> None:
        if self.previous is None:
            return
        self.backend.put_settings(self.index, self.previous)
        self.previous = None
        meta = self.backend.mapping_meta(self.index)
        if MARKER in meta:
            meta.pop(MARKER)
            self.backend.put_mapping_meta(self.index, meta)


class AsyncLoadSettings:
    """:class:`LoadSettings` over an async backend."""

    def __init__(self, backend: Any, index: str) -> None:
        self.backend = backend
        self.index = index
        self.previous: dict[str, Any] | None = None

    async def recover(self) -> dict[str, Any] | None:
        meta = await self.backend.mapping_meta(self.index)
        marker = marker_of(meta)
        if marker is None:
            return None
        await self.backend.put_settings(self.index, marker["previous"])
        meta.pop(MARKER, None)
        await self.backend.put_mapping_meta(self.index, meta)
        logger.warning("index '%s': restored the settings %s", self.index, describe_marker(marker))
        return marker

    async def relax(self) -> None:
        meta = await self.backend.mapping_meta(self.index)
        marker = marker_of(meta)
        if marker is None:
            marker = new_marker(await self.backend.get_settings(self.index))
            await self.backend.put_mapping_meta(self.index, {**meta, MARKER: marker})
        self.previous = dict(marker["previous"])
        await self.backend.put_settings(self.index, RELAXED)

    async def restore(self) -> None:
        if self.previous is None:
            return
        await self.backend.put_settings(self.index, self.previous)
        self.previous = None
        meta = await self.backend.mapping_meta(self.index)
        if MARKER in meta:
            meta.pop(MARKER)
            await self.backend.put_mapping_meta(self.index, meta)
