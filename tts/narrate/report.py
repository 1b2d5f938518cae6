"""What a person reads about a narration: the plan of a dry run, progress notes, the closing summary."""

from __future__ import annotations

from .job import Preview, Summary
from .runner import Progress


def clock(seconds: float | None) -> str:
    """H:MM:SS, or --:-- when unknown."""
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_note(state: Progress) -> str:
    """Audio made, speed and ETA of a run in progress (shown beside the chunk count)."""
    speed = f"{state.speed:.2f}x real time" if state.speed else "-x real time"
    failed = f", {state.chunks_failed} failed" if state.chunks_failed else ""
    return f"audio {clock(state.audio_seconds)}, {speed}, ETA {clock(state.eta)}{failed}"


def preview_lines(preview: Preview) -> list[str]:
    """The chapters a book was split into, and its chunks when the model is known (for --dry-run)."""
    plan = preview.plan
    if plan is None:
        book = preview.book
        words = [sum(len(p.text.split()) for p in chapter.paragraphs) for chapter in book.chapters]
        lines = [f"{book.title}: {len(book.chapters)} chapters, {sum(words)} words (chunks are cut in the "
                 "model's tokens: pass --model-dir to see them)"]
        return lines + [f"{index + 1:>4}  {len(chapter.paragraphs):>5} paragraphs  {count:>6} words  {chapter.title}"
                        for index, (chapter, count) in enumerate(zip(book.chapters, words))]
    lines = [f"{plan.title}: {len(plan.chapters)} chapters, {len(plan.chunks)} chunks, "
             f"{sum(len(c.text.split()) for c in plan.chunks)} words"]
    for index, title in enumerate(plan.chapters):
        chunks = plan.chapter_chunks(index)
        lines.append(f"{index + 1:>4}  {len(chunks):>5} chunks  {sum(len(c.text.split()) for c in chunks):>6} words  "
                     f"{title}")
    return lines


def summary_lines(summary: Summary) -> list[str]:
    """What a finished run made and wrote, and each chunk that failed."""
    lines = []
    made = summary.progress
    if made is not None and made.chunks_done:
        lines.append(f"made {made.chunks_done} chunks ({clock(made.audio_seconds)} of audio) in {clock(made.elapsed)}, "
                     f"{made.speed or 0:.2f}x real time; {summary.reused} were already done")
    elif not summary.failures:
        lines.append(f"all {summary.reused} chunks were already done")
    rendered = summary.rendered
    if rendered is not None:
        if rendered.book is not None:
            lines.append(f"wrote {rendered.book} ({clock(rendered.book_seconds)}, {len(rendered.chapters)} chapters, "
                         f"gain {rendered.gain_db:+.1f} dB), chapter files in {summary.outdir / 'chapters'}, "
                         "chapters.txt")
        elif rendered.chapters:
            lines.append(f"wrote {len(rendered.chapters)} complete chapter files in {summary.outdir / 'chapters'}; "
                         "the book file waits for the failed chunks")
    for failure in summary.failures:
        text = failure.chunk.text if len(failure.chunk.text) <= 60 else failure.chunk.text[:57] + "..."
        lines.append(f"  failed {failure.chunk.label} ({failure.chunk.key}): {failure.reason}: {text!r}")
    return lines


def failed_message(summaries: Summary | list[Summary]) -> str:
    """The closing error of a run (of one book or several) that left failed chunks."""
    summaries = [summaries] if isinstance(summaries, Summary) else summaries
    failed, chunks = sum(len(s.failures) for s in summaries), sum(s.chunks for s in summaries)
    books = sum(1 for s in summaries if s.failures)
    where = f" in {books} of {len(summaries)} books" if len(summaries) > 1 else ""
    return f"{failed} of {chunks} chunks failed{where} (listed above); run the same command again to retry them"
