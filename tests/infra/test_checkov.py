"""checkov on the packaged template: no failed check, and every waiver says why.

checkov runs from its own venv (`make checkov`, which `make test` depends on): its pinned
dependencies clash with cfn-lint's and moto's in .venv. It runs offline: `--skip-download` (no
Prisma Cloud policies, guidelines or suppressions), no API key, no results upload and no update
check. A waiver is `Metadata: checkov: skip: [{id, comment}]` on the resource, every one of them
in resources/security.yml (`extensions`, which also reaches the resources osls generates).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from packaged import ROOT, TEMPLATE, Template

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# Offline and quiet: no platform mapping download, no PyPI version check.
OFFLINE_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
# What checkov reports when a waiver has no comment.
NO_COMMENT = "No comment provided"


@pytest.fixture(scope="module")
def report(packaged) -> dict[str, Any]:
    """checkov's JSON report on the packaged template (cloudformation checks only)."""
    if not CHECKOV.exists():
        pytest.skip(
            "CHECKOV NOT RUN: .venv-checkov is missing. Run `make test` (or `make checkov`), "
            "which installs it; a bare pytest does not."
        )
    # Nothing of the caller's checkov or Prisma Cloud settings (an API key would mean uploads).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "CKV_", "PRISMA_"))}
    done = subprocess.run(
        [
            str(CHECKOV),
            "--framework",
            "cloudformation",
            "--file",
            str(TEMPLATE),
            "--skip-download",
            "--skip-results-upload",
            "--output",
            "json",
        ],
        cwd=ROOT,
        env=env | OFFLINE_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    # 0: all passed, 1: some failed; anything else is checkov itself failing.
    if done.returncode not in (0, 1):
        pytest.fail(f"checkov exited {done.returncode}:\n{done.stderr[-4000:]}", pytrace=False)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _waivers(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, entry) for every `Metadata.checkov.skip` entry of the template."""
    for logical_id, resource in template.resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            yield logical_id, skip


def test_checkov_scanned_every_resource(report, template):
    """A template checkov failed to read would pass every check by having none."""
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == len(template.resources)
    assert summary["passed"] > 50


def test_no_failed_check(report):
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    if failed:
        pytest.fail(
            f"checkov: {len(failed)} failed check(s). Fix them, or waive one in "
            "resources/security.yml (`extensions`) with its reason:\n  " + "\n  ".join(failed),
            pytrace=False,
        )


def test_every_waiver_carries_its_reason(template):
    missing = [
        f"{skip.get('id')} on {logical_id}"
        for logical_id, skip in _waivers(template)
        if not isinstance(skip.get("comment"), str) or len(skip["comment"].split()) < 5
    ]
    assert not missing, "checkov waivers without a reason: " + ", ".join(missing)


def test_checkov_applies_every_waiver_and_no_other(report, template):
    """A waiver with a wrong id or on the wrong resource would sit there and waive nothing."""
    skipped = {
        (c["check_id"], c["resource"].split(".", 1)[1]): c["check_result"].get("suppress_comment")
        for c in report["results"]["skipped_checks"]
    }
    assert set(skipped) == {(skip["id"], logical_id) for logical_id, skip in _waivers(template)}
    assert NO_COMMENT not in skipped.values()


# The resource policy types, and the property naming what each one guards.
POLICY_TARGETS = {
    "AWS::S3::BucketPolicy": "Bucket",
    "AWS::SQS::QueuePolicy": "Queues",
    "AWS::SNS::TopicPolicy": "Topics",
}


def _resource_policy(template: Template, target: str) -> list[dict[str, Any]]:
    """The statements of the one resource policy guarding ``target`` (a logical id)."""
    found = []
    for type_, key in POLICY_TARGETS.items():
        for policy in template.of_type(type_).values():
            guarded = policy["Properties"][key]  # a bucket policy names one, the others a list
            if {"Ref": target} in (guarded if isinstance(guarded, list) else [guarded]):
                found.append(policy["Properties"]["PolicyDocument"]["Statement"])
    (statements,) = found
    return statements


@pytest.mark.parametrize("target", ["PartitionsFailureQueue", "AlarmTopic"])
def test_tls_only(template, target):
    """A request over plain HTTP is refused, whoever sends it (the bucket's: test_template.py)."""
    denials = [s for s in _resource_policy(template, target) if s["Effect"] == "Deny"]
    assert [(s["Principal"], s["Condition"]) for s in denials] == [
        ("*", {"Bool": {"aws:SecureTransport": "false"}})
    ]


def test_the_alarm_topic_takes_this_accounts_alarms(template):
    """A topic policy replaces SNS's default one: without this grant no alarm would arrive. No
    other service may publish: the supervisor and the rollup's destination publish with their
    roles (test_monitoring.py)."""
    (allow,) = [s for s in _resource_policy(template, "AlarmTopic") if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
