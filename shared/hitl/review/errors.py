"""Errors of the A2I runtime API (type name and HTTP status as botocore's model) and the portal."""

from __future__ import annotations


class A2IError(Exception):
    """An error the A2I API answers with ``{"__type": code, "Message": message}``."""

    code = "InternalServerException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(A2IError):
    code = "ValidationException"
    status = 400


class NotFoundError(A2IError):
    code = "ResourceNotFoundException"
    status = 404


class ConflictError(A2IError):
    code = "ConflictException"
    status = 409


class QuotaExceededError(A2IError):
    code = "ServiceQuotaExceededException"
    status = 402


class ThrottlingError(A2IError):
    code = "ThrottlingException"
    status = 429


class InternalError(A2IError):
    code = "InternalServerException"
    status = 500


class AuthError(A2IError):
    """SigV4 failures, answered 403 like AWS (botocore raises them as ClientError)."""

    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PortalError(Exception):
    """A reviewer-facing failure: the task is gone, not theirs, or the answer is malformed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
