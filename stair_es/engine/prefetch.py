"""Run an iterator in a background thread, a bounded number of items ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
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
