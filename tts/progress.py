"""The one progress display of the command line: a bar on a terminal, otherwise (a log, a pipe) a line
every `every_s` seconds and one when the job reaches its total.

    with ProgressDisplay("narrating", unit="chunks") as show:
        show(done, total, "audio 0:01:02, 1.20x real time")   # whenever there is news

Amounts are shown in `unit`, after dividing by `scale` (e.g. seconds shown as hours), with `digits`
decimals. Lines go to standard error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class ProgressDisplay:
    def __init__(self, label: str, unit: str = "", *, scale: float = 1.0, digits: int = 0,
                 every_s: float | None = 60.0, elapsed: bool = False, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """`every_s=None`: nothing at all unless the stream is a terminal. `elapsed`: lines end with the
        minutes since the display was made."""
        self.label, self.unit, self.scale, self.digits = label, unit, scale, digits
        self.every_s, self.elapsed, self.clock = every_s, elapsed, clock
        self.stream = stream or sys.stderr
        self.start = self.last = self.clock()
        self.reached = False
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            amount = f"{{n:.{digits}f}}/{{total:.{digits}f}}"
            self.bar = tqdm(total=1, desc=label, file=self.stream, dynamic_ncols=True, leave=False,
                            bar_format=f"{{desc}}: {amount} {unit} |{{bar:20}}| [{{elapsed}}<{{remaining}}]{{postfix}}")

    def amount(self, value: float) -> str:
        return f"{value / self.scale:.{self.digits}f}"

    def __call__(self, done: float, total: float, note: str = "") -> None:
        if self.bar is not None:
            self.bar.total = total / self.scale
            self.bar.n = min(done, total) / self.scale
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.refresh()
            return
        if self.every_s is None:
            return
        now = self.clock()
        reached = total > 0 and done >= total
        if now - self.last >= self.every_s or (reached and not self.reached):
            self.last, self.reached = now, reached
            share = f" ({100 * min(done / total, 1):.0f}%)" if total > 0 else ""
            unit = f" {self.unit}" if self.unit else ""
            parts = [f"{self.label}: {self.amount(done)} / {self.amount(total)}{unit}{share}"]
            parts += [note] if note else []
            parts += [f"{(now - self.start) / 60:.1f} min"] if self.elapsed else []
            print(", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
