"""OpenTelemetry spans along an event's way, in the producer's W3C trace (docs/api.md#tracing).

The CloudEvents distributed-tracing extension (`traceparent`, `tracestate`) of an event is
read by `tracker.bindings` (`Event.traceparent`). From there:

- `tracker.ingest` (`ingest_span`): one span per ingest call (an HTTP request, a push
  delivery, a pulled batch), a child of the events' trace context when they all share one
  trace (links to the other events' contexts), else a root with a link to each. Every
  event in that trace continues in the ingest span: its `traceparent` becomes the span's.
- `tracker.commit` (`record_commit`): one span per store transaction, which group commit
  shares among many requests, so it is a root with a link to each event's context; and a
  `tracker.apply` child span per event, in the event's trace, with its outcome.
- The outbox row of every notice the event caused (done, cancel, resume; topic, webhooks)
  keeps that context (`Notice.traceparent`), so its delivery, later and perhaps in another
  process, is a `tracker.notify` span (`delivery_span`) in the same trace, and what is sent
  carries the span's context: `ce-traceparent` on Pub/Sub, a `traceparent` header on
  webhooks. A consumer continues the trace from it (`context_of`).

Only opentelemetry-api is needed: without an SDK the tracer is a no-op, and the event's own
context passes through unchanged (the no-op span carries its parent's context). `tracker
serve --otel-exporter` sets up the SDK (the `tracing` extra). `use` gives the tracker a
provider of its own (an embedding application's, a test's) instead of the global one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracker.events import TRACEPARENT_ATTR, TRACESTATE_ATTR, Event

if TYPE_CHECKING:
    from tracker.stores.base import BatchResult

log = logging.getLogger(__name__)

NAME: Final = "tracker"
EXPORTERS: Final = ("none", "console", "otlp")
# Links on one span at most (the SDK keeps 128 by default).
MAX_LINKS: Final = 64

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_provider: trace.TracerProvider | None = None
_tracer: trace.Tracer = trace.get_tracer(NAME)


def use(provider: trace.TracerProvider | None) -> None:
    """Make the tracker's spans with `provider` (None: the global provider again)."""
    global _provider, _tracer
    _provider = provider
    _tracer = trace.get_tracer(NAME, tracer_provider=provider)


def tracer() -> trace.Tracer:
    return _tracer


# `trace.get_tracer_provider()` reads os.environ on every call while no provider is set
# (about 1.5 us, twice per ingest call); the API's module global says the same at once. It
# is private, so the public call stays the fallback should a later API not have it.
_FAST_GLOBAL: Final = hasattr(trace, "_TRACER_PROVIDER")
if _FAST_GLOBAL and "OTEL_PYTHON_TRACER_PROVIDER" in os.environ:
    trace.get_tracer_provider()  # the provider that variable names, loaded now


def active() -> bool:
    """Whether spans are recorded at all (a provider other than the API's no-op one)."""
    if _provider is not None:
        return True
    if _FAST_GLOBAL:
        return trace._TRACER_PROVIDER is not None
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def context_of(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The OpenTelemetry context of a W3C trace context, None when there is none valid."""
    if not traceparent:
        return None
    carrier = {TRACEPARENT_ATTR: traceparent}
    if tracestate:
        carrier[TRACESTATE_ATTR] = tracestate
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def span_context_of(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    context = context_of(traceparent, tracestate)
    return None if context is None else trace.get_current_span(context).get_span_context()


def carrier(span: Span) -> dict[str, str]:
    """`traceparent` (and `tracestate`) of `span`; empty when its context is not valid."""
    out: dict[str, str] = {}
    if span.get_span_context().is_valid:
        _PROPAGATOR.inject(out, context=trace.set_span_in_context(span))
    return out


def _event_context(event: Event) -> SpanContext | None:
    return span_context_of(event.traceparent, event.tracestate) if event.traceparent else None


def _links(contexts: Sequence[SpanContext], skip: SpanContext | None = None) -> list[Link]:
    seen: set[tuple[int, int]] = set()
    links: list[Link] = []
    for sc in contexts:
        key = (sc.trace_id, sc.span_id)
        if sc is skip or key in seen:
            continue
        seen.add(key)
        links.append(Link(sc))
        if len(links) >= MAX_LINKS:
            break
    return links


def traced(events: Sequence[Event]) -> bool:
    """Whether an ingest of `events` has anything to trace (so the untraced path costs
    nothing more than this look)."""
    return active() or any(e.traceparent is not None for e in events)


@contextlib.contextmanager
def ingest_span(events: Sequence[Event], route: str) -> Iterator[list[Event]]:
    """The `tracker.ingest` span around an ingest call; yields the events to apply, those
    in the span's trace now continuing in it (module docstring)."""
    contexts = [sc for sc in map(_event_context, events) if sc is not None]
    parent: SpanContext | None = None
    if contexts and all(sc.trace_id == contexts[0].trace_id for sc in contexts):
        parent = contexts[0]
    context = (
        trace.set_span_in_context(trace.NonRecordingSpan(parent), Context())
        if parent is not None
        else Context()
    )
    attributes: dict[str, str | int] = {"tracker.route": route, "tracker.events": len(events)}
    if len(events) == 1:
        attributes["cloudevents.event_id"] = events[0].id
        attributes["cloudevents.event_subject"] = events[0].operation
        attributes["cloudevents.event_type"] = events[0].kind.type
    with _tracer.start_as_current_span(
        "tracker.ingest",
        context=context,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=_links(contexts, skip=parent),
    ) as span:
        if not span.is_recording():
            yield list(events)  # the no-op tracer: every event keeps its own context
            return
        own = carrier(span)
        here = span.get_span_context().trace_id
        continued = []
        for event, sc in zip(events, map(_event_context, events), strict=True):
            if sc is None or sc.trace_id == here:
                event = dataclasses.replace(
                    event,
                    traceparent=own.get(TRACEPARENT_ATTR),
                    tracestate=own.get(TRACESTATE_ATTR),
                )
            continued.append(event)
        yield continued


def record_commit(
    events: Sequence[Event],
    result: BatchResult | None,
    error: BaseException | None,
    start_ns: int,
    end_ns: int,
) -> None:
    """The `tracker.commit` span of one transaction and a `tracker.apply` span per event
    with a trace context (module docstring); nothing unless spans are recorded."""
    if not active():
        return
    contexts = [(e, _event_context(e)) for e in events]
    commit = _tracer.start_span(
        "tracker.commit",
        context=Context(),
        attributes={"tracker.events": len(events)},
        links=_links([sc for _, sc in contexts if sc is not None]),
        start_time=start_ns,
    )
    if error is not None:
        commit.set_status(Status(StatusCode.ERROR, type(error).__name__))
    commit.end(end_ns)
    outcomes = [r.outcome.value for r in result.results] if result is not None else []
    for index, (event, sc) in enumerate(contexts):
        if sc is None:
            continue
        attributes: dict[str, str] = {
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.kind.type,
            "cloudevents.event_subject": event.operation,
        }
        if index < len(outcomes):
            attributes["tracker.outcome"] = outcomes[index]
        span = _tracer.start_span(
            "tracker.apply",
            context=trace.set_span_in_context(trace.NonRecordingSpan(sc), Context()),
            attributes=attributes,
            links=[Link(commit.get_span_context())],
            start_time=start_ns,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_ns)


@contextlib.contextmanager
def delivery_span(
    traceparent: str, tracestate: str, attributes: Mapping[str, str | int]
) -> Iterator[dict[str, str]]:
    """The `tracker.notify` span of one outbox delivery, in the trace its row keeps (a root
    of its own when it keeps none); yields the trace context to send along."""
    context = context_of(traceparent, tracestate) or Context()
    with _tracer.start_as_current_span(
        "tracker.notify", context=context, kind=SpanKind.PRODUCER, attributes=dict(attributes)
    ) as span:
        yield carrier(span)


def configure(exporter: str, service_name: str = "tracker") -> None:
    """Set up the OpenTelemetry SDK as the global provider, exporting with `exporter`
    (none: leave the API's no-op tracer). Needs the `tracing` extra; the standard OTEL_*
    environment variables (endpoint, headers, resource attributes) apply."""
    if exporter == "none":
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    except ImportError as exc:
        from tracker.errors import ConfigError

        raise ConfigError(
            f"--otel-exporter {exporter}: the OpenTelemetry SDK is not installed"
            " (pip install 'tracker[tracing]')"
        ) from exc
    span_exporter: SpanExporter
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            from tracker.errors import ConfigError

            raise ConfigError(
                "--otel-exporter otlp: opentelemetry-exporter-otlp is not installed"
                " (pip install 'tracker[tracing]')"
            ) from exc
        span_exporter = OTLPSpanExporter()
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: spans exported with %s", exporter)


__all__ = [
    "EXPORTERS",
    "active",
    "carrier",
    "configure",
    "context_of",
    "delivery_span",
    "ingest_span",
    "record_commit",
    "span_context_of",
    "traced",
    "tracer",
    "use",
]
