"""Audiobook narration: whole books into chapter files and an audiobook, resumable after any stop.

    from tts.narrate import narrate
    summary = narrate(["book.epub"], "out/", "joe", fmt="m4b")

Modules, one job each: :mod:`.book` (reading .txt/.md/.epub into chapters; :mod:`.markdown`,
:mod:`.epub`, :mod:`.xhtml`), :mod:`.plan` (chunks with stable keys and pauses), :mod:`.store` (the
SQLite manifest), :mod:`.runner` (batches through the pipeline, failure isolation, progress),
:mod:`.loudness`, :mod:`.render` and :mod:`.writers` (the output files), :mod:`.job` (one run).
"""

from ..quality import DurationCheck
from .job import Summary, narrate
from .runner import Progress

__all__ = ["DurationCheck", "Progress", "Summary", "narrate"]
