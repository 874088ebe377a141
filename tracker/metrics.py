"""Counters an operator (and a test) can read: /metrics in Prometheus text format."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._event_counters: dict[tuple[str, str], Counter] = {}
        self.events = Counter(
            "tracker_events",
            "Events by route and outcome.",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "tracker_events_rejected",
            "Events that can never apply, by route and reason.",
            ["route", "reason"],
            registry=self.registry,
        )
        self.transient = Counter(
            "tracker_transient_failures",
            "Events refused for a retry (store unavailable).",
            ["route"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "tracker_notifications",
            "Done-notifications: sent (every sink took it), failed (one attempt; retried"
            " unless it was the last), gave_up (no longer retried: a failed notification).",
            ["result"],
            registry=self.registry,
        )
        self.traceparent_ignored = Counter(
            "tracker_traceparent_ignored",
            "Events whose traceparent or tracestate was not valid W3C trace context: applied"
            " without it (the tracker starts a trace of its own).",
            ["route"],
            registry=self.registry,
        )
        self.transaction_retries = Counter(
            "tracker_store_transaction_retries",
            "Read-write transactions run again after the store aborted them (Spanner's"
            " lock conflicts).",
            registry=self.registry,
        )

        self.writes_in_flight = Gauge(
            "tracker_store_writes_in_flight",
            "Event batches handed to the store and not yet committed or failed.",
            registry=self.registry,
        )

    def count_event(self, route: str, outcome: str) -> None:
        """One event of `route` ended with `outcome`. Each labelled counter is looked up
        once: `labels` takes a lock and checks its arguments on every call, and this runs
        per event on the hot path."""
        key = (route, outcome)
        child = self._event_counters.get(key)
        if child is None:
            child = self._event_counters[key] = self.events.labels(route=route, outcome=outcome)
        child.inc()

    def value(self, counter: Counter | Gauge, **labels: str) -> float:
        """Current value of a labelled counter (for tests and the CLI)."""
        metric = counter.labels(**labels) if labels else counter
        return float(metric._value.get())


METRICS = Metrics()
