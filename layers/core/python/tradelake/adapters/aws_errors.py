"""Reading AWS errors without importing botocore into the callers' signatures."""

from __future__ import annotations

from collections.abc import Mapping


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (or look-alike), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            code = error.get("Code")
            return str(code) if code is not None else None
    return None
