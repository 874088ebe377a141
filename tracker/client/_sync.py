"""`TrackerClient`: the plans of `_core` over a synchronous httpx client."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self, TypeVar

import httpx
import httpx_sse
from google.longrunning import operations_proto_pb2 as operations_pb2  # without grpc

from tracker.client import _core
from tracker.client._core import DEFAULT_TIMEOUT, Mode, Plan, PublishResult, Request
from tracker.client._future import M, OperationFuture
from tracker.client._history import HistoryEntry, history_page
from tracker.client._producers import MetadataValue, Producer, _created_data
from tracker.constants import DEFAULT_URL
from tracker.errors import TrackerError
from tracker.events import JSON_CONTENT_TYPE, Event

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from tracker.completions import Completions

T = TypeVar("T")


class TrackerClient(_core.HttpClientBase, Producer[PublishResult]):
    """Synchronous client of one tracker.

    Args:
        url: base URL of the tracker's HTTP server.
        timeout: seconds (or an httpx.Timeout) for ordinary calls; `wait` and `watch`
            extend the read timeout to cover their server-side wait.
        source: CloudEvents `source` of the events this client builds.
        mode: default content mode of `publish` and the producer verbs.
        content_type: default data encoding, application/json or application/protobuf.
        token: a bearer token to send (else TRACKER_TOKEN).
        id_token_audience: send a Google ID token for this audience from Application
            Default Credentials (else TRACKER_ID_TOKEN_AUDIENCE).
        auth: any httpx.Auth instead (tracker.client.credentials).
        transport: an httpx transport (e.g. httpx.MockTransport in a user's tests).
        headers: extra headers on every request.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        source: str | None = None,
        mode: Mode = "binary",
        content_type: str = JSON_CONTENT_TYPE,
        token: str | None = None,
        id_token_audience: str | None = None,
        auth: httpx.Auth | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        settings = self._setup(
            url, timeout, source, mode, content_type, (token, id_token_audience, auth), headers
        )
        self._http = httpx.Client(transport=transport, **settings)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        _core.close_auth(self.auth, self._owns_auth)

    def _send(self, request: Request) -> httpx.Response:
        try:
            response = self._http.request(
                request.method, request.path, **_core.httpx_arguments(request, self._timeout)
            )
        except httpx.HTTPError as exc:
            raise _core.unavailable(self.url, exc) from exc
        return _core.check(response)

    def _run(self, plan: Plan[T]) -> T:
        step = _core.Step(plan)
        request = step.first()
        while request is not None:
            try:
                response = self._send(request)
            except TrackerError as exc:
                request = step.fail(exc)
            else:
                request = step.answer(response)
        return step.result

    # ---- producers ---------------------------------------------------------------------

    def _emit(self, event: Event) -> PublishResult:
        return self.publish(event)[0]

    def publish(
        self,
        event_or_events: Event | Iterable[Event],
        mode: Mode | None = None,
        content_type: str | None = None,
    ) -> builtins.list[PublishResult]:
        """Publish events; one result per event, in order.

        Batch mode sends them in one request, applied all-or-nothing; binary and
        structured mode send one request per event.
        """
        events = [event_or_events] if isinstance(event_or_events, Event) else event_or_events
        plan = _core.publish(events, mode or self.mode, content_type or self.content_type)
        return self._run(plan)

    # ---- consumers ---------------------------------------------------------------------

    def create(
        self,
        name: str = "",
        *,
        collection: str = "",
        request_id: str | None = None,
        operation_type: str = "",
        labels: Mapping[str, str] | None = None,
        parent: str = "",
        metadata: MetadataValue | None = None,
        deadline: datetime | None = None,
        heartbeat_timeout: timedelta | float | None = None,
    ) -> operations_pb2.Operation:
        """Create an operation now and return it, committed: what an API method hands
        its caller (docs/api.md, "Creating an operation"); the work's later events may
        then take any transport.

        `name` (`operations/ID`, `projects/P/locations/L/operations/ID`), or none: the
        tracker names it in `collection` (`projects/P/locations/L`; default the
        tracker's own). `request_id` (AIP-155): the same id again returns the same
        operation instead of a second one; pass your own to be safe across your own
        retries (None: a fresh UUID, so this call's retries are safe). A name that
        exists already is `AlreadyExists`. The rest is what `created` carries."""
        data = _created_data(operation_type, labels, parent, metadata, deadline, heartbeat_timeout)
        plan = _core.create(data, name, collection, request_id or str(uuid.uuid4()))
        return self._run(plan)

    def get(self, name: str) -> operations_pb2.Operation:
        return self._run(_core.get(name))

    def list_page(
        self,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        order_by: str = "",
        *,
        parent: str = "",
    ) -> tuple[builtins.list[operations_pb2.Operation], str]:
        """One page and the next page token ("" on the last page).

        `order_by` (AIP-132): create_time, update_time, end_time or name, each optionally
        followed by desc, comma-separated; by name when empty. `parent`: only the
        operations of `projects/P` or `projects/P/locations/L` (docs/api.md).
        """
        return self._run(_core.list_page(filter, page_size, page_token, order_by, parent))

    def count(self, filter: str = "", *, parent: str = "") -> int:
        """How many operations match `filter` (a lower bound past the server's bound)."""
        return self._run(_core.count(filter, parent))

    def list(
        self, filter: str = "", page_size: int = 0, order_by: str = "", *, parent: str = ""
    ) -> Iterator[operations_pb2.Operation]:
        """Every operation matching `filter` (AIP-160 subset), fetching page after page."""
        token = ""
        while True:
            operations, token = self.list_page(filter, page_size, token, order_by, parent=parent)
            yield from operations
            if not token:
                return

    def history_page(
        self, name: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[HistoryEntry], str]:
        """One page of the operation's event history, oldest first, and the next page
        token ("" on the last page)."""
        return self._run(history_page(name, page_size, page_token))

    def history(self, name: str, page_size: int = 0) -> Iterator[HistoryEntry]:
        """Every event kept in the operation's history (and the tracker's own actions on
        it), oldest first, fetching page after page."""
        token = ""
        while True:
            entries, token = self.history_page(name, page_size, token)
            yield from entries

            if not token:
                return

    def bulk(
        self, action: str, filter: str, *, rate: float | None = None
    ) -> operations_pb2.Operation:
        """Cancel (action "cancel": the running ones) or delete ("delete") every operation
        matching `filter`, at most `rate` per second, as a bulk Operation the server works
        through in the background; wait on it, watch it or cancel it like any other."""
        result = self._run(_core.bulk(action, filter, False, rate))
        assert isinstance(result, operations_pb2.Operation)
        return result

    def bulk_dry_run(self, action: str, filter: str) -> int:
        """How many operations `bulk(action, filter)` would act on now; changes nothing."""
        result = self._run(_core.bulk(action, filter, True, None))
        assert isinstance(result, int)
        return result

    def cancel(self, name: str) -> None:
        """CancelOperation: the operation ends as CANCELLED at once unless already done;
        its worker's later events are late."""
        self._run(_core.cancel(name))

    def delete(self, name: str) -> None:
        self._run(_core.delete(name))

    def get_checkpoint(self, name: str) -> bytes | None:
        """The latest checkpoint bytes, or None when the operation has none."""
        return self._run(_core.get_checkpoint(name))

    def wait(self, name: str, timeout: float | None = None) -> operations_pb2.Operation:
        """Block until the operation is done or `timeout` seconds pass (None: no limit).

        Returns the operation either way; check `.done`. The server does the waiting
        (WaitOperation), so the call wakes the moment the terminal event lands.
        """
        return self._run(_core.wait(name, timeout))

    def operation(
        self,
        name: str,
        *,
        completions: Completions | None = None,
        result_type: type[M] | None = None,
        metadata_type: type[Message] | None = None,
    ) -> OperationFuture[M]:
        """`name` as a future shaped like google.api_core's Operation: `result(timeout)`
        returns the response (as `result_type`) or raises the mapped error. Resolved by
        `completions` (one completion-topic subscription shared by every waiter) when
        given, else by WaitOperation on this client."""
        return OperationFuture(
            self,
            name,
            completions=completions,
            result_type=result_type,
            metadata_type=metadata_type,
        )

    def watch(self, name: str, timeout: float | None = None) -> Iterator[operations_pb2.Operation]:
        """The current state, then each change, until done (or `timeout` seconds pass).

        Server-Sent Events from GET /v1/{name}:watch, reopened when a stream ends early;
        when the timeout passes first, the last state yielded is not done.
        """
        session = _core.WatchSession(name, timeout)
        while (request := session.next_request()) is not None:
            kwargs = _core.httpx_arguments(request, self._timeout)
            try:
                with httpx_sse.connect_sse(self._http, "GET", request.path, **kwargs) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        _core.check(source.response)
                    for sse in source.iter_sse():
                        operation = session.on_event(sse.event, sse.data)
                        if operation is not None:
                            yield operation
                        if session.finished:
                            return
            except httpx.ReadTimeout as exc:
                session.on_read_timeout(self.url, exc)
                continue
            except httpx.HTTPError as exc:
                raise _core.unavailable(self.url, exc) from exc
            session.on_stream_end()
