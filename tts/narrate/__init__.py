"""Audiobook narration: whole books into chapter files and an audiobook, resumable after any stop.

    from tts.narrate import narrate
    summary = narrate(["book.epub"], "out/", "joe", fmt="m4b")

Modules, one job each: :mod:`.book` (Book, headings, plain text), :mod:`.markdown`, :mod:`.epub` and
:mod:`.xhtml` (the other readers), :mod:`.inputs` (the reader for each input file), :mod:`.plan`
(chunks with stable keys and pauses, cut by the model's text splitter), :mod:`.store` (the SQLite
manifest), :mod:`.runner` (batches through the pipeline, failure isolation, progress),
:mod:`.loudness`, :mod:`.render` and :mod:`.writers` (the output files), :mod:`.job` (one run, and
the dry run's preview), :mod:`.report` (the lines a person reads about a run).
"""

from ..quality import DurationCheck
from .job import Summary, narrate
from .runner import Progress

__all__ = ["DurationCheck", "Progress", "Summary", "narrate"]
