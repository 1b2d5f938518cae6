"""Audiobook narration: whole books into chapter files and an audiobook, resumable after any stop.

    from tts.narrate import narrate, narrate_books
    from tts.narrate.cluster import ClusterSpec

    summary = narrate(["book.epub"], "out/", "joe", fmt="m4b")
    summaries = narrate_books([(["a.epub"], "lib/a"), (["b.md"], "lib/b")], "joe", cluster=ClusterSpec.parse("auto"))

Modules, one job each: :mod:`.book` (Book, headings, plain text), :mod:`.markdown`, :mod:`.epub` and
:mod:`.xhtml` (the other readers), :mod:`.inputs` (the reader for each input file), :mod:`.plan`
(chunks with stable keys and pauses, cut by the model's text splitter), :mod:`.store` (the SQLite
manifest), :mod:`.runner` (batches through the pipeline, failure isolation, progress),
:mod:`.loudness`, :mod:`.render` and :mod:`.writers` (the output files), :mod:`.job` (one run, and
the dry run's preview; several books in one run), :mod:`.cluster` (the chunks made on a Ray
cluster; imports Ray), :mod:`.report` (the lines a person reads about a run).
"""

from ..quality import DurationCheck
from .job import Summary, narrate, narrate_books
from .runner import Progress

__all__ = ["DurationCheck", "Progress", "Summary", "narrate", "narrate_books"]
