"""Work that runs ahead of its consumer, bounded: one place for the pattern the indexer, the image
decoder and the ingest reader all use (results always come back in input order)."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterator[T], ahead: int) -> Generator[T, None, None]:
    """Iterate ``items`` in a background thread, at most ``ahead`` items in advance.

    Why: preparing and serializing documents is GIL-bound Python, while a bulk request waits on the
    engine with the GIL released; overlapping the two uses the second core. An exception in the
    thread is raised here; closing this generator stops and joins the thread.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=max(ahead, 1))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Raised(exc))

    thread = threading.Thread(target=work, name="stair-es-bulk-prepare", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def map_ahead(
    pool: Executor, fn: Callable[[Any], T], items: Iterable[Any], ahead: int
) -> Iterator[Future[T]]:
    """``pool.submit(fn, item)`` for each item, keeping at most ``ahead`` submitted but not yet
    handed out; yields the futures in input order.

    Why futures, not results: a caller can time how long it waits on each (the ingest report's
    read/decode stages), and order stays stable for reproducible ids and batches.
    """
    pending: deque[Future[T]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= max(ahead, 1):
            yield pending.popleft()
    yield from pending
