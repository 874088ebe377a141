from google.api import annotations_pb2 as _annotations_pb2
from google.longrunning import operations_pb2 as _operations_pb2
from tracker.v1 import events_pb2 as _events_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateOperationRequest(_message.Message):
    __slots__ = ("parent", "operation_id", "operation", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    operation_id: str
    operation: _events_pb2.Created
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., operation_id: _Optional[str] = ..., operation: _Optional[_Union[_events_pb2.Created, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...
