"""Running real state machines in moto, with real Lambda handlers behind the Task states.

moto (5.x) ships LocalStack's ASL interpreter but leaves out two steps of its optimised service
integrations: request parameters are not converted to botocore's casing (``StateMachineArn`` →
``stateMachineArn``) and responses are not made JSON-safe (``startDate`` is a datetime). Real
Step Functions does both, and our continue-as-new (``states:startExecution``) fails in moto
without them. ``patch_moto_sfn`` puts the two steps back; ``dispatch_lambdas`` routes every
``lambda:invoke`` to an in-process handler instead of moto's echo.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service as service,
)

Invocation = tuple[str, dict[str, Any]]


def _normalise_parameters(
    self: service.StateTaskService,
    parameters: dict[str, Any],
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    name = self._get_boto_service_name(boto_service_name=boto_service_name)
    action = self._get_boto_service_action(service_action_name=service_action_name)
    model = boto3.session.Session().client(name, region_name="us-east-1")._service_model
    operation = next(n for n in model.operation_names if n.lower() == action.replace("_", ""))
    shape = model.operation_model(operation).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(
    self: service.StateTaskService,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    if not isinstance(response, dict):
        return
    for key in list(response):
        value = response.pop(key)
        if isinstance(value, datetime.datetime):
            value = value.isoformat()
        response[key[:1].upper() + key[1:]] = value


def patch_moto_sfn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.StateTaskService, "_normalise_parameters", _normalise_parameters)
    monkeypatch.setattr(service.StateTaskService, "_normalise_response", _normalise_response)


def dispatch_lambdas(
    monkeypatch: pytest.MonkeyPatch, handlers: Mapping[str, Callable[[dict[str, Any]], Any]]
) -> list[Invocation]:
    """Route moto's Lambda invocations by function name to ``handlers``; returns the calls."""
    calls: list[Invocation] = []

    def invoke(  # noqa: PLR0917 (moto's signature)
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1]
        event = json.loads(body) if body else {}
        calls.append((name, event))
        return json.dumps(handlers[name](event)).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    return calls
