"""Process-wide output settings, applied only in processes stair-es owns (the CLI, its Ray
workers), never at import: in an application, the warning filters are the application's."""

from __future__ import annotations

import warnings

# Pillow's DecompressionBombWarning, matched by text so that this module does not import Pillow
BOMB_WARNING = r"Image size \(\d+ pixels\) exceeds limit of \d+ pixels"


def quiet_bomb_warnings() -> None:
    """Hide Pillow's decompression-bomb warning: ``decode_image`` refuses such images itself with
    one line naming the file, and the warning (raised inside ``Image.open``, before the size is
    known to us) would only add a second, anonymous line."""
    for action, message, *_ in warnings.filters:
        if action == "ignore" and message is not None and message.pattern == BOMB_WARNING:
            return
    warnings.filterwarnings("ignore", message=BOMB_WARNING, module=r"PIL\.Image")
