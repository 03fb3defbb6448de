"""What ``GET /metrics`` shows Prometheus: traffic, latency, batching, the serving model, the queues.

Each bot keeps its own registry rather than prometheus-client's global one, so two servers in one
process (tests, a benchmark) never share or clash over counters. Values that already live elsewhere
(queue depths, the model version, the process's memory) are read at scrape time, not copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bot.batching import MicroBatcher

if TYPE_CHECKING:
    from dialogues.store import Store

# Replies are expected in milliseconds; the top buckets catch a stalled model or disk.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# A write waits for another process's lock (a sqlite3 shell, a purge) up to the 30 s busy timeout, then fails.
LOCK_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class _ModelVersion(Collector):
    """``deskbot_model_info{version="..."} 1`` for whichever version serves at scrape time."""

    def __init__(self, version: Callable[[], str]) -> None:
        self.version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("deskbot_model_info", "The serving model version (always 1).", labels=["version"])
        family.add_metric([self.version()], 1)
        yield family


class Metrics:
    """The bot's counters and histograms, and the exposition that /metrics returns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open fds
        self.messages = Counter("deskbot_messages", "Messages handled, by channel, reply source and outcome.",
                                ["channel", "source", "status"], registry=self.registry)
        self.latency = Histogram("deskbot_reply_seconds", "From a message reaching the engine to its reply, "
                                 "the log write included.", ["channel"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("deskbot_batch_size", "Items per batch, for model inference and for store writes.",
                                    ["stage"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("deskbot_batch_seconds", "Time one batch took in its worker thread.",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("deskbot_queue_depth", "Requests waiting for their stage's worker.", ["stage"],
                                 registry=self.registry)
        self.responses = Counter("deskbot_http_responses", "HTTP responses by status, the refusals (400, 401, 413, "
                                 "429, 503) included.", ["status"], registry=self.registry)
        self.customers_waiting = Gauge("deskbot_customers_waiting", "Handed-off customers waiting for a person's reply.",
                                       registry=self.registry)
        self.store_lock_wait = Histogram("deskbot_store_lock_wait_seconds", "How long each write of the conversation "
                                         "store waited for its lock, which another process may hold (a sqlite3 shell, "
                                         "a purge); /healthz turns 503 at 2 s.", buckets=LOCK_WAIT_BUCKETS,
                                         registry=self.registry)
        self.store_lock_waiting = Gauge("deskbot_store_lock_waiting_seconds", "How long the store's write now "
                                        "asking for its lock has waited (0 when none waits).", registry=self.registry)
        self.renewals_failing = Gauge("deskbot_renewals_failing_seconds", "How long this server's renewals of its "
                                      "turns and claims in the store have failed, or the one now running gone on (0 "
                                      "while they work); /healthz turns 503 at 10 s.", registry=self.registry)
        self.actions_unlisted = Gauge("deskbot_actions_unlisted", "The actions bot.yml's actions.map names that the "
                                      "action server does not list (GET /actions), as last asked; the log names them.",
                                      registry=self.registry)
        self.longest_wait = Gauge("deskbot_longest_wait_seconds", "How long the longest-waiting of them has waited "
                                  "(0 when nobody waits): the figure to alert on.", registry=self.registry)

    def watch(self, batchers: dict[str, MicroBatcher], model_version: Callable[[], str]) -> None:
        """Observe each batcher's batches and queue under its stage name, and report the serving version."""
        for stage, batcher in batchers.items():
            batcher.on_batch = self._batch_observer(stage)
            self.queue_depth.labels(stage).set_function(lambda b=batcher: b.queue_depth)
        self.registry.register(_ModelVersion(model_version))

    def watch_store(self, store: Store) -> None:
        """Time the store's waits for its write lock: those under the 2 s that turn /healthz 503 went unseen,
        and contention from another process built up without a sign."""
        store.on_lock_wait = self.store_lock_wait.observe
        self.store_lock_waiting.set_function(store.waiting_for_lock)

    def watch_renewals(self, failing_s: Callable[[], float]) -> None:
        """Report how long the renewals of the server's turns have failed: the other servers on the store take its
        conversations over once they have for the stale time, which an alert can warn of before."""
        self.renewals_failing.set_function(failing_s)

    def _batch_observer(self, stage: str) -> Callable[[int, float], None]:
        size, seconds = self.batch_size.labels(stage), self.batch_seconds.labels(stage)

        def observe(items: int, elapsed: float) -> None:
            size.observe(items)
            seconds.observe(elapsed)

        return observe

    def reply(self, channel: str, source: str, status: str, seconds: float) -> None:
        self.messages.labels(channel, source, status).inc()
        self.latency.labels(channel).observe(seconds)

    def response(self, status: int) -> None:
        self.responses.labels(str(status)).inc()

    def waiting(self, customers: int, longest_seconds: float) -> None:
        self.customers_waiting.set(customers)
        self.longest_wait.set(longest_seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
