"""The server's figures in Prometheus' text format (version 0.0.4): counters, gauges and histograms.

Updated from the event loop and the model's thread alike, so every change takes one lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)] + ([extra] if extra else [])
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return out


class Gauge:
    """A value read when the metrics are rendered."""

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        self.name, self.help, self.read = name, help, read

    def lines(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {_number(self.read())}"]


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help, tuple(buckets) + (math.inf,)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{_number(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        return out + [f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {self.count}"]


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter("tts_http_requests_total", "HTTP requests answered, by endpoint and status.",
                                ("endpoint", "status"))
        self.speech = Counter("tts_speech_requests_total",
                              "Speech requests by outcome (ok, error, cancelled, timeout, rejected).", ("outcome",))
        self.latency = Histogram("tts_speech_latency_seconds",
                                 "Speech requests from arrival to the last byte, completed ones.", LATENCY_BUCKETS)
        self.first_audio = Histogram("tts_speech_first_audio_seconds",
                                     "Speech requests from arrival to their first audio.", LATENCY_BUCKETS)
        self.batch_chunks = Histogram("tts_batch_chunks", "Text chunks sampled together in one GPT batch.",
                                      BATCH_BUCKETS)
        self.batch_requests = Histogram("tts_batch_requests", "Requests whose chunks shared one GPT batch.",
                                        BATCH_BUCKETS)
        self.audio_seconds = Counter("tts_audio_seconds_total", "Seconds of audio sent.")
        self.gauges: list[Gauge] = []

    def add_gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help, read))

    def count_request(self, endpoint: str, status: int) -> None:
        with self.lock:
            self.requests.inc(endpoint, str(status))

    def speech_outcome(self, outcome: str) -> None:
        with self.lock:
            self.speech.inc(outcome)

    def speech_done(self, seconds: float) -> None:
        with self.lock:
            self.latency.observe(seconds)

    def speech_first_audio(self, seconds: float) -> None:
        with self.lock:
            self.first_audio.observe(seconds)

    def batch(self, chunks: int, requests: int) -> None:
        with self.lock:
            self.batch_chunks.observe(chunks)
            self.batch_requests.observe(requests)

    def audio_sent(self, seconds: float) -> None:
        with self.lock:
            self.audio_seconds.inc(amount=seconds)

    def render(self) -> str:
        with self.lock:
            families = [self.requests, self.speech, self.latency, self.first_audio, self.batch_chunks,
                        self.batch_requests, self.audio_seconds]
            lines = [line for family in families for line in family.lines()]
        lines += [line for gauge in self.gauges for line in gauge.lines()]
        return "\n".join(lines) + "\n"
