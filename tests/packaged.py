"""The packaged CloudFormation template, built by `make package` once a session if it is stale.

`make test` packages first, so the template is fresh and nothing is rebuilt here; a bare `pytest`
after an edit of serverless.yml, resources/, the plugin, a handler or the core package (its C hot
path included) runs `make package` once (offline, ~10 s) before the first infra test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / ".serverless"
TEMPLATE = PACKAGE_DIR / "cloudformation-template-update-stack.json"
STAGE = "ci"  # what `make package` packages
FUNCTIONS = ("ingest", "partitions", "supervisor")


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (scripts/ is no package); registered, as its
    dataclasses need."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _sources() -> Iterator[Path]:
    yield ROOT / "serverless.yml"
    yield ROOT / "package-lock.json"
    yield ROOT / "layers" / "deps" / "requirements.txt"
    for pattern in ("resources/*.yml", ".serverless_plugins/*.js", "functions/**/*.py"):
        yield from ROOT.glob(pattern)
    for pattern in ("*.py", "*.sql", "*.c"):  # *.c: the hot path, compiled by `make package`
        yield from (ROOT / "layers" / "core" / "python" / "tradelake").rglob(pattern)


def _stale() -> list[Path]:
    if not TEMPLATE.exists():
        return [TEMPLATE]
    built = TEMPLATE.stat().st_mtime
    return [p for p in _sources() if p.exists() and p.stat().st_mtime > built]


@pytest.fixture(scope="session")
def packaged() -> Path:
    """The .serverless/ directory of a `make package` at least as new as every source."""
    if stale := _stale():
        done = subprocess.run(
            ["make", "package"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            pytest.fail(
                f"`make package` failed (needed: {stale[0].relative_to(ROOT)} is newer than the"
                f" packaged template):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}",
                pytrace=False,
            )
    return PACKAGE_DIR


@dataclass(frozen=True)
class Template:
    """The template as parsed JSON, with a few look-ups the tests share."""

    data: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.data["Resources"]

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
        return next(iter(found.items()))

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id]["Properties"]

    def function(self, name: str) -> dict[str, Any]:
        return self.props(f"{name.capitalize()}LambdaFunction")

    def depends_on(self, logical_id: str) -> list[str]:
        deps = self.resources[logical_id].get("DependsOn", [])
        return [deps] if isinstance(deps, str) else list(deps)

    def state_machine_definition(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ASL definition (placeholders ``${…}`` left in) and the Fn::Sub mapping."""
        _, machine = self.one("AWS::StepFunctions::StateMachine")
        body = machine["Properties"]["DefinitionString"]
        if isinstance(body, str):
            return json.loads(body), {}
        sub = body["Fn::Sub"]
        text, mapping = (sub, {}) if isinstance(sub, str) else sub
        return json.loads(text), mapping

    def policy_statements(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of a role's inline policies and of AWS::IAM::Policy attached to it."""
        statements: list[dict[str, Any]] = []
        for policy in self.props(role_id).get("Policies", []):
            statements.extend(policy["PolicyDocument"]["Statement"])
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        return statements


@pytest.fixture(scope="session")
def template(packaged: Path) -> Template:
    return Template(json.loads((packaged / TEMPLATE.name).read_text()))


@pytest.fixture(scope="session")
def artifact(packaged: Path):
    """Open a packaged zip by name (``ingest.zip``, ``core.zip``, ...)."""

    def open_zip(name: str) -> zipfile.ZipFile:
        return zipfile.ZipFile(packaged / name)

    return open_zip
