from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("client_id", "token")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    token: str
    def __init__(self, client_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "config_json", "max_message_bytes", "max_upload_bytes", "chunk_bytes", "poll_s")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    POLL_S_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    config_json: str
    max_message_bytes: int
    max_upload_bytes: int
    chunk_bytes: int
    poll_s: float
    def __init__(self, session_id: _Optional[str] = ..., config_json: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., poll_s: _Optional[float] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("session_id", "client_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    client_id: int
    def __init__(self, session_id: _Optional[str] = ..., client_id: _Optional[int] = ...) -> None: ...

class TaskReply(_message.Message):
    __slots__ = ("kind", "task", "stage")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WAIT: _ClassVar[TaskReply.Kind]
        TASK: _ClassVar[TaskReply.Kind]
        DONE: _ClassVar[TaskReply.Kind]
        STAGE: _ClassVar[TaskReply.Kind]
    WAIT: TaskReply.Kind
    TASK: TaskReply.Kind
    DONE: TaskReply.Kind
    STAGE: TaskReply.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    kind: TaskReply.Kind
    task: Task
    stage: StageTask
    def __init__(self, kind: _Optional[_Union[TaskReply.Kind, str]] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., stage: _Optional[_Union[StageTask, _Mapping]] = ...) -> None: ...

class StageTask(_message.Message):
    __slots__ = ("round", "client_id", "stage", "payload_size")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    round: int
    client_id: int
    stage: str
    payload_size: int
    def __init__(self, round: _Optional[int] = ..., client_id: _Optional[int] = ..., stage: _Optional[str] = ..., payload_size: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("round", "client_id", "model_version", "model_size", "model_is_diff", "control_size", "mask", "settings_json")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_IS_DIFF_FIELD_NUMBER: _ClassVar[int]
    CONTROL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    round: int
    client_id: int
    model_version: int
    model_size: int
    model_is_diff: bool
    control_size: int
    mask: bytes
    settings_json: str
    def __init__(self, round: _Optional[int] = ..., client_id: _Optional[int] = ..., model_version: _Optional[int] = ..., model_size: _Optional[int] = ..., model_is_diff: bool = ..., control_size: _Optional[int] = ..., mask: _Optional[bytes] = ..., settings_json: _Optional[str] = ...) -> None: ...

class TaskPart(_message.Message):
    __slots__ = ("head", "data")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    head: TaskReply
    data: bytes
    def __init__(self, head: _Optional[_Union[TaskReply, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ReplyHeader(_message.Message):
    __slots__ = ("session_id", "round", "client_id", "payload_sizes", "num_examples", "num_steps", "loss", "train_s", "metrics", "failure_kind", "failure_message", "stage")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZES_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_S_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_KIND_FIELD_NUMBER: _ClassVar[int]
    FAILURE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    client_id: int
    payload_sizes: _containers.RepeatedScalarFieldContainer[int]
    num_examples: int
    num_steps: int
    loss: float
    train_s: float
    metrics: _containers.ScalarMap[str, float]
    failure_kind: str
    failure_message: str
    stage: str
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., client_id: _Optional[int] = ..., payload_sizes: _Optional[_Iterable[int]] = ..., num_examples: _Optional[int] = ..., num_steps: _Optional[int] = ..., loss: _Optional[float] = ..., train_s: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., failure_kind: _Optional[str] = ..., failure_message: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ReplyHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ReplyHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("accepted", "failure_kind", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    failure_kind: str
    message: str
    def __init__(self, accepted: bool = ..., failure_kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
