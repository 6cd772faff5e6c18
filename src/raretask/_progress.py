"""Progress bars that draw nothing when turned off.

rich 13 (the newest ai2-olmo-core's dependencies allow) writes an empty line when a disabled
``Progress`` stops, which would put a blank line before a command's output under
``--no-progress``; ``progress_bar(False)`` is a stand-in that writes nothing."""

from __future__ import annotations

import contextlib


class _Off:
    """A turned-off bar: ``add_task``, ``advance`` and ``update`` do nothing."""

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass

    def update(self, *args, **kwargs) -> None:
        pass


def progress_bar(enabled: bool, *columns, **kwargs):
    """``rich.progress.Progress(*columns, **kwargs)`` when ``enabled``, else a context yielding
    a bar that draws nothing."""
    if not enabled:
        return contextlib.nullcontext(_Off())
    from rich.progress import Progress

    return Progress(*columns, **kwargs)
