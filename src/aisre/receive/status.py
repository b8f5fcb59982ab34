"""google.rpc.Status bodies, the error shape OTLP uses on both transports."""

from __future__ import annotations

import orjson
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from aisre.core.errors import AisreError, PayloadTooLarge, RetryableError, UnsupportedMediaType


def grpc_code(error: AisreError) -> int:
    """The google.rpc.Code for an error."""
    if isinstance(error, RetryableError):
        return code_pb2.RESOURCE_EXHAUSTED if error.overloaded else code_pb2.UNAVAILABLE
    if isinstance(error, PayloadTooLarge):
        return code_pb2.RESOURCE_EXHAUSTED
    if isinstance(error, UnsupportedMediaType):
        return code_pb2.INVALID_ARGUMENT
    return code_pb2.INVALID_ARGUMENT


def status_message(error: AisreError) -> status_pb2.Status:
    """A Status with RetryInfo attached when the sender should come back later."""
    status = status_pb2.Status(code=grpc_code(error), message=error.message)
    if isinstance(error, RetryableError):
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(error.retry_after), nanos=int((error.retry_after % 1) * 1e9))
        )
        status.details.add().Pack(info)
    return status


def encode_status(error: AisreError, encoding: str) -> bytes:
    """Status in the request's encoding (JSON when the encoding itself was refused)."""
    status = status_message(error)
    if encoding == "protobuf":
        return status.SerializeToString()
    return orjson.dumps({"code": status.code, "message": status.message})
