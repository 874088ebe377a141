import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from tracker.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OperationMetadata(_message.Message):
    __slots__ = ("percent", "message", "operation_type", "labels", "parent", "create_time", "update_time", "end_time", "last_heartbeat_time", "cancel_requested", "last_sequence", "deadline", "attempt", "attempt_reason", "last_attempt_error", "children", "attempt_start_time")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_ERROR_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_START_TIME_FIELD_NUMBER: _ClassVar[int]
    percent: float
    message: str
    operation_type: str
    labels: _containers.ScalarMap[str, str]
    parent: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    last_heartbeat_time: _timestamp_pb2.Timestamp
    cancel_requested: bool
    last_sequence: int
    deadline: _timestamp_pb2.Timestamp
    attempt: int
    attempt_reason: str
    last_attempt_error: _status_pb2.Status
    children: ChildrenSummary
    attempt_start_time: _timestamp_pb2.Timestamp
    def __init__(self, percent: _Optional[float] = ..., message: _Optional[str] = ..., operation_type: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., parent: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., last_sequence: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., attempt_reason: _Optional[str] = ..., last_attempt_error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., children: _Optional[_Union[ChildrenSummary, _Mapping]] = ..., attempt_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChildrenSummary(_message.Message):
    __slots__ = ("total", "done", "succeeded", "failed", "cancelled", "percent")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    total: int
    done: int
    succeeded: int
    failed: int
    cancelled: int
    percent: float
    def __init__(self, total: _Optional[int] = ..., done: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., percent: _Optional[float] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("kind", "operation", "attempt", "reason", "has_checkpoint", "operation_type", "error", "children", "target", "not_before", "traceparent", "tracestate")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Notice.Kind]
        DONE: _ClassVar[Notice.Kind]
        CANCEL: _ClassVar[Notice.Kind]
        RESUME: _ClassVar[Notice.Kind]
    KIND_UNSPECIFIED: Notice.Kind
    DONE: Notice.Kind
    CANCEL: Notice.Kind
    RESUME: Notice.Kind
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[Notice.Reason]
        STALLED: _ClassVar[Notice.Reason]
        FAILED: _ClassVar[Notice.Reason]
        CHILDREN_DONE: _ClassVar[Notice.Reason]
        CANCEL_REQUESTED: _ClassVar[Notice.Reason]
        PARENT_CANCELLED: _ClassVar[Notice.Reason]
        CHILD_FAILED: _ClassVar[Notice.Reason]
    REASON_UNSPECIFIED: Notice.Reason
    STALLED: Notice.Reason
    FAILED: Notice.Reason
    CHILDREN_DONE: Notice.Reason
    CANCEL_REQUESTED: Notice.Reason
    PARENT_CANCELLED: Notice.Reason
    CHILD_FAILED: Notice.Reason
    KIND_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HAS_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    kind: Notice.Kind
    operation: str
    attempt: int
    reason: Notice.Reason
    has_checkpoint: bool
    operation_type: str
    error: _status_pb2.Status
    children: ChildrenSummary
    target: str
    not_before: _timestamp_pb2.Timestamp
    traceparent: str
    tracestate: str
    def __init__(self, kind: _Optional[_Union[Notice.Kind, str]] = ..., operation: _Optional[str] = ..., attempt: _Optional[int] = ..., reason: _Optional[_Union[Notice.Reason, str]] = ..., has_checkpoint: _Optional[bool] = ..., operation_type: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., children: _Optional[_Union[ChildrenSummary, _Mapping]] = ..., target: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class EventKey(_message.Message):
    __slots__ = ("attempt", "has_sequence", "sequence", "time", "event_id")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    HAS_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    has_sequence: bool
    sequence: int
    time: _timestamp_pb2.Timestamp
    event_id: str
    def __init__(self, attempt: _Optional[int] = ..., has_sequence: _Optional[bool] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...

class OperationState(_message.Message):
    __slots__ = ("name", "created_key", "operation_type", "labels", "parent", "deadline", "heartbeat_timeout", "create_time", "progress_key", "percent", "message", "metadata_key", "custom_metadata", "checkpoint_key", "has_checkpoint", "last_heartbeat_time", "done", "terminal_key", "response", "error", "end_time", "cancel_requested", "last_sequence", "update_time", "attempt", "attempt_reason", "last_attempt_error", "retry", "children_policy", "children", "children_fired", "webhooks", "counted_in_parent", "counted_done_in_parent", "attempt_start_time", "retries")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_KEY_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_METADATA_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_KEY_FIELD_NUMBER: _ClassVar[int]
    HAS_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_KEY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_POLICY_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIRED_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    COUNTED_IN_PARENT_FIELD_NUMBER: _ClassVar[int]
    COUNTED_DONE_IN_PARENT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_START_TIME_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    created_key: EventKey
    operation_type: str
    labels: _containers.ScalarMap[str, str]
    parent: str
    deadline: _timestamp_pb2.Timestamp
    heartbeat_timeout: _duration_pb2.Duration
    create_time: _timestamp_pb2.Timestamp
    progress_key: EventKey
    percent: float
    message: str
    metadata_key: EventKey
    custom_metadata: _any_pb2.Any
    checkpoint_key: EventKey
    has_checkpoint: bool
    last_heartbeat_time: _timestamp_pb2.Timestamp
    done: bool
    terminal_key: EventKey
    response: _any_pb2.Any
    error: _status_pb2.Status
    end_time: _timestamp_pb2.Timestamp
    cancel_requested: bool
    last_sequence: int
    update_time: _timestamp_pb2.Timestamp
    attempt: int
    attempt_reason: str
    last_attempt_error: _status_pb2.Status
    retry: _events_pb2.RetryPolicy
    children_policy: _events_pb2.ChildrenPolicy
    children: ChildrenSummary
    children_fired: bool
    webhooks: _containers.RepeatedCompositeFieldContainer[_events_pb2.Webhook]
    counted_in_parent: bool
    counted_done_in_parent: bool
    attempt_start_time: _timestamp_pb2.Timestamp
    retries: int
    def __init__(self, name: _Optional[str] = ..., created_key: _Optional[_Union[EventKey, _Mapping]] = ..., operation_type: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., parent: _Optional[str] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress_key: _Optional[_Union[EventKey, _Mapping]] = ..., percent: _Optional[float] = ..., message: _Optional[str] = ..., metadata_key: _Optional[_Union[EventKey, _Mapping]] = ..., custom_metadata: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., checkpoint_key: _Optional[_Union[EventKey, _Mapping]] = ..., has_checkpoint: _Optional[bool] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., done: _Optional[bool] = ..., terminal_key: _Optional[_Union[EventKey, _Mapping]] = ..., response: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., last_sequence: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., attempt_reason: _Optional[str] = ..., last_attempt_error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., retry: _Optional[_Union[_events_pb2.RetryPolicy, _Mapping]] = ..., children_policy: _Optional[_Union[_events_pb2.ChildrenPolicy, _Mapping]] = ..., children: _Optional[_Union[ChildrenSummary, _Mapping]] = ..., children_fired: _Optional[bool] = ..., webhooks: _Optional[_Iterable[_Union[_events_pb2.Webhook, _Mapping]]] = ..., counted_in_parent: _Optional[bool] = ..., counted_done_in_parent: _Optional[bool] = ..., attempt_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retries: _Optional[int] = ...) -> None: ...
