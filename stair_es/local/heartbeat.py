"""A line every few seconds while something slow runs (a download, a node starting), so a person
watching ``stair-es engine up`` knows what it is doing instead of staring at a silent terminal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def heartbeat(log: Callable[[str], None], doing: str, every: float = 10.0) -> Iterator[None]:
    """Log ``"<doing> (12 s)"`` every ``every`` seconds until the block ends."""
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            log(f"  ... {doing} ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=beat, name="stair-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
