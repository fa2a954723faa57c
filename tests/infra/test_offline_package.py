"""`serverless package` is offline: no credentials, no network (the local offline-package plugin).

Each run starts osls with an empty environment (no AWS variables, an empty HOME so no
~/.aws), proxies pointing at a closed port, and — where the kernel lets us — in a network
namespace of its own with no interface but loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cfnlint.api import lint_file

ROOT = Path(__file__).resolve().parents[2]
OSLS = ROOT / "node_modules" / ".bin" / "osls"
PLUGIN = ROOT / ".serverless_plugins"
DEAD_PROXY = "http://127.0.0.1:9"


def _can_unshare_network() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    done = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    return done.returncode == 0


ISOLATE = ["unshare", "-n"] if _can_unshare_network() else []


def osls(cwd: Path, *args: str, offline: bool = True, home: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "HTTPS_PROXY": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        "https_proxy": DEAD_PROXY,
        "http_proxy": DEAD_PROXY,
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
    }
    if offline:
        env["SLS_OFFLINE_PACKAGE"] = "1"
    return subprocess.run(
        [*ISOLATE, str(OSLS), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def tiny_service(tmp_path, packaged):  # packaged: node_modules installed by `make package`
    """A one-layer service using the real plugin, to try what the big one must never do."""
    service = tmp_path / "svc"
    (service / "layer" / "python").mkdir(parents=True)
    (service / "layer" / "python" / "m.py").write_text("X = 1\n")
    (service / "node_modules").symlink_to(ROOT / "node_modules")
    (service / ".serverless_plugins").symlink_to(PLUGIN)

    def write(environment: str = "plain") -> Path:
        (service / "serverless.yml").write_text(
            "service: tiny\n"
            "provider: {name: aws, runtime: python3.12, environment: {X: '" + environment + "'}}\n"
            "plugins: [offline-package]\n"
            "layers: {l: {path: layer}}\n"
        )
        return service

    return write


def _copy_of_the_service(target: Path) -> Path:
    """The files `serverless package` reads, copied: osls empties <service>/.serverless first,
    and the repository's own .serverless belongs to `make package` and the template tests."""
    for name in ("serverless.yml", "resources", "functions", "layers/core/python/tradelake"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    shutil.copytree(ROOT / "layers" / "deps" / "python", target / "layers" / "deps" / "python")
    (target / "node_modules").symlink_to(ROOT / "node_modules")
    (target / ".serverless_plugins").symlink_to(PLUGIN)
    return target


def package_with(tmp_path: Path, *params: str) -> Path:
    """Package a copy of the service for stage ci offline with ``params`` (``name=value``) on
    top of the alarm e-mail; the path of its template."""
    service = _copy_of_the_service(tmp_path / "stack")
    done = osls(
        service,
        "package",
        "--stage",
        "ci",
        "--region",
        "eu-west-1",
        "--param=alarmEmail=alarms@example.com",
        *(f"--param={param}" for param in params),
        home=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return service / ".serverless" / "cloudformation-template-update-stack.json"


def test_the_stack_packages_with_no_credentials_and_no_network(tmp_path, packaged):
    path = package_with(tmp_path)
    out = path.parent
    template = json.loads(path.read_text())
    assert "CoreLambdaLayer" in template["Resources"]
    assert {p.name for p in out.glob("*.zip")} >= {"core.zip", "deps.zip", "ingest.zip"}
    # The same template as `make package` wrote (but for the artifacts' timestamped S3 keys).
    ours = json.loads((packaged / "cloudformation-template-update-stack.json").read_text())
    assert _without_s3_keys(template) == _without_s3_keys(ours)


def test_with_quicksight_switched_on_the_stack_packages_offline_and_passes_cfn_lint(
    tmp_path, packaged
):
    """The optional QuickSight resources (resources/analytics.yml) with their parameter set."""
    principal = "arn:aws:quicksight:eu-west-1:123456789012:user/default/analyst"
    path = package_with(tmp_path, f"quicksightPrincipal={principal}")
    template = json.loads(path.read_text())
    assert template["Parameters"]["QuickSightPrincipal"]["Default"] == principal
    assert "QuickSightDashboard" in template["Resources"]
    assert [str(m) for m in lint_file(path)] == []
    # Only the parameter's default differs from the template `make package` wrote.
    ours = json.loads((packaged / "cloudformation-template-update-stack.json").read_text())
    ours["Parameters"]["QuickSightPrincipal"]["Default"] = principal
    assert _without_s3_keys(template) == _without_s3_keys(ours)


def _without_s3_keys(template: dict) -> str:
    return re.sub(
        r'"serverless/tradelake/ci/[^"]*"', '"<key>"', json.dumps(template, sort_keys=True)
    )


def test_without_the_plugin_the_layer_step_needs_aws(tiny_service, tmp_path):
    done = osls(tiny_service(), "package", offline=False, home=tmp_path)
    assert done.returncode != 0
    assert "credentials" in (done.stdout + done.stderr)


def test_with_the_plugin_a_layer_packages_offline(tiny_service, tmp_path):
    done = osls(tiny_service(), "package", home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_any_other_aws_call_fails_loudly(tiny_service, tmp_path):
    done = osls(tiny_service("${aws:accountId}"), "package", home=tmp_path)
    assert done.returncode != 0
    assert "SLS_OFFLINE_PACKAGE=1: packaging tried to call AWS" in done.stdout + done.stderr


def test_the_offline_switch_refuses_deploy(tiny_service, tmp_path):
    done = osls(tiny_service(), "deploy", home=tmp_path)
    assert done.returncode != 0
    assert "is only for `serverless package`" in done.stdout + done.stderr


ADOPTED = "tradelake-prod-123-eu-west-1"


def test_with_an_existing_data_bucket_the_stack_adopts_it_offline_and_passes_cfn_lint(
    tmp_path, packaged
):
    """Remove, then deploy again (issue 8): `existingDataBucket` set, no bucket is created."""
    path = package_with(tmp_path, f"existingDataBucket={ADOPTED}")
    template = json.loads(path.read_text())
    resources = template["Resources"]
    assert [k for k, v in resources.items() if v["Type"] == "AWS::S3::Bucket"] == [
        "ServerlessDeploymentBucket"
    ]
    assert '"DataBucket"' not in json.dumps(template)
    assert "DataBucket.Arn" not in json.dumps(template)
    arn = {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{ADOPTED}"}
    # The notification, on the existing bucket (osls's Custom::S3), with the bucket's filters.
    (notification,) = [v for v in resources.values() if v["Type"] == "Custom::S3"]
    props = notification["Properties"]
    assert props["BucketName"] == ADOPTED
    assert props["FunctionName"] == "tradelake-ci-partitions"
    assert props["BucketConfigs"] == [
        {"Event": "s3:ObjectCreated:*", "Rules": [{"Prefix": "trades/"}, {"Suffix": ".parquet"}]}
    ]
    permission = resources["PartitionsS3Permission"]["Properties"]
    assert permission["SourceArn"] == arn
    # Firehose writes there, the functions and roles name it.
    firehose = resources["TradesDeliveryStream"]["Properties"]
    assert firehose["ExtendedS3DestinationConfiguration"]["BucketARN"] == arn
    for fn in ("Ingest", "Supervisor", "Rollup", "Partitions"):
        env = resources[f"{fn}LambdaFunction"]["Properties"]["Environment"]["Variables"]
        assert env["DATA_BUCKET"] == ADOPTED, fn
    ingest_role = json.dumps(resources["IngestRole"])
    assert f"arn:${{AWS::Partition}}:s3:::{ADOPTED}/_state/*" in ingest_role
    delivery_role = json.dumps(resources["FirehoseDeliveryRole"])
    assert f"arn:${{AWS::Partition}}:s3:::{ADOPTED}/trades/*" in delivery_role
    trades = resources["TradesTable"]["Properties"]["TableInput"]["StorageDescriptor"]
    assert trades["Location"] == f"s3://{ADOPTED}/trades/"
    policy = resources["DataBucketPolicy"]["Properties"]
    assert policy["Bucket"] == ADOPTED
    assert [str(m) for m in lint_file(path)] == []

    # Without the param (`make package`): the bucket is created and notifies as before.
    ours = json.loads((packaged / "cloudformation-template-update-stack.json").read_text())
    bucket = ours["Resources"]["DataBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["Properties"]["BucketName"] == {
        "Fn::Sub": "tradelake-ci-${AWS::AccountId}-${AWS::Region}"
    }
    assert "NotificationConfiguration" in bucket["Properties"]
    assert not [v for v in ours["Resources"].values() if v["Type"] == "Custom::S3"]
    assert ours["Resources"]["TradesDeliveryStream"]["Properties"][
        "ExtendedS3DestinationConfiguration"
    ]["BucketARN"] == {"Fn::GetAtt": ["DataBucket", "Arn"]}
