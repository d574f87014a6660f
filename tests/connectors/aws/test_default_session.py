"""Without injected clients, the AWS source and exposure reader make their clients from a botocore
session that honours ``profile`` and ``region`` as boto3 would, reads timestamps with the
standard library, and never imports boto3 (0.13 s of start-up for nothing used)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest

from connectors.aws_iam.clients import AwsClients, ClientProvider, DefaultSession
from connectors.aws_iam.exposure.clients import ExposureClients
from connectors.aws_iam.settings import AwsSettings
from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def profile_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared credentials file with two profiles and no credentials in the environment."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n"
        "[audit]\naws_access_key_id = AKIAAUDITPROFILE\naws_secret_access_key = a\n"
    )
    (tmp_path / "config").write_text("[profile audit]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))


@pytest.mark.usefixtures("profile_files")
def test_the_configured_profile_gives_the_credentials_and_the_configured_region_wins() -> None:
    session = DefaultSession.of(AwsSettings(name="aws", profile="audit", region="ap-south-1"))

    assert session.botocore_session.get_credentials().access_key == "AKIAAUDITPROFILE"
    assert session.client("sts").meta.region_name == "ap-south-1"


@pytest.mark.usefixtures("profile_files")
def test_without_a_profile_the_default_chain_is_used() -> None:
    session = DefaultSession.of(AwsSettings(name="aws"))

    assert session.botocore_session.get_credentials().access_key == "AKIADEFAULT"
    assert session.client("sts").meta.region_name == "us-east-1"


def test_exposure_clients_read_timestamps_with_the_standard_library_too(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    seed_users([SeedUser("ada")])
    provider = ClientProvider(AwsSettings(name="aws", endpoint_url=moto_endpoint), AwsClients())

    users = ExposureClients(provider).home("iam").list_users()["Users"]

    assert [u["UserName"] for u in users] == ["ada"]
    # botocore's default parser answers in dateutil's tzutc; ours in the standard library's UTC.
    assert users[0]["CreateDate"].tzinfo is UTC


PROBE = """
import json, sys
from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.settings import AwsSettings
provider = ClientProvider(AwsSettings(name="aws", endpoint_url=sys.argv[1]), AwsClients())
users = [u["UserName"] for u in provider.home_iam().list_users()["Users"]]
print(json.dumps({"users": users, "account": provider.home_account(), "boto3": "boto3" in sys.modules}))
"""


def test_a_source_without_injected_clients_reads_aws_without_importing_boto3(moto_endpoint: str) -> None:
    seed_users([SeedUser("ada"), SeedUser("bob")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV, PYTHONPATH=str(REPO))

    proc = subprocess.run(
        [sys.executable, "-c", PROBE, moto_endpoint], env=env, capture_output=True, text=True, timeout=120
    )

    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert sorted(answer["users"]) == ["ada", "bob"]
    assert answer["account"] == "123456789012"  # moto's account: sts answered through the same session
    assert answer["boto3"] is False
