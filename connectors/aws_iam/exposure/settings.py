"""The ``[sources.exposure]`` table of an ``aws_iam`` source, parsed once into a frozen value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from offboard_audit.core.options import SourceOptions

# Every key of [sources.exposure] with its help (printed by ``config check`` under ``exposure``).
EXPOSURE_OPTIONS: dict[str, str] = {
    "trail_bucket": "S3 bucket of the CloudTrail log files (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/"
    "*.json.gz; organisation trails AWSLogs/<org-id>/<account>/...).",
    "trail_prefix": 'Prefix before AWSLogs/ in the bucket (default "").',
    "trail_region": "Region of the trail bucket (default: the source's region).",
    "lookback": 'How far back the first read of a trail prefix goes (default "365d").',
    "overlap": "Late-delivery window re-listed on each run; objects already read in it are skipped "
    '(default "1h"). With lake_event_data_store: how far before the last event read each query '
    "starts again, for events Lake ingests late; events already read in it are skipped.",
    "workers": "Log objects fetched concurrently (default 4).",
    "regions": "Regions whose Secrets Manager, SSM and KMS inventory is read (default: the source's region).",
    "owner_tag_keys": 'Secret/parameter/KMS key tag keys naming who rotates it (default ["owner"]).',
    "signing_tags": 'Tags "key=value" that mark a secret as a signing key (default ["purpose=signing", '
    '"signing=true"]); KMS SIGN_VERIFY keys are signing keys anyway.',
    "lake_event_data_store": "Read events from this CloudTrail Lake event data store (ARN or id) with "
    "StartQuery/GetQueryResults instead of scanning log files (for trails too large for one machine).",
}


@dataclass(frozen=True, slots=True)
class ExposureSettings:
    trail_bucket: str | None = None
    trail_prefix: str = ""
    trail_region: str | None = None
    lookback: timedelta = timedelta(days=365)
    overlap: timedelta = timedelta(hours=1)
    workers: int = 4
    regions: tuple[str, ...] = ()
    owner_tag_keys: tuple[str, ...] = ("owner",)
    signing_tags: tuple[tuple[str, str], ...] = (("purpose", "signing"), ("signing", "true"))
    lake_event_data_store: str | None = None


def parse_exposure(options: SourceOptions, default_region: str) -> ExposureSettings | None:
    """The source's ``exposure`` table, or None when it has none. Errors name their key."""
    if "exposure" not in options:
        return None
    table = options.table("exposure")
    table.only(EXPOSURE_OPTIONS)
    bucket = table.opt_str("trail_bucket")
    lake = table.opt_str("lake_event_data_store")
    if bucket is None and lake is None:
        raise table.error("trail_bucket", "is required (or lake_event_data_store)")
    if bucket is not None and lake is not None:
        raise table.error(
            "lake_event_data_store", "use either trail_bucket or lake_event_data_store, not both"
        )
    prefix = (
        table.opt_str("trail_prefix", "") if "trail_prefix" in table and table.raw["trail_prefix"] else ""
    )
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    signing = table.pairs("signing_tags", ("purpose=signing", "signing=true"))
    return ExposureSettings(
        trail_bucket=bucket,
        trail_prefix=prefix or "",
        trail_region=table.opt_str("trail_region") or default_region,
        lookback=table.duration("lookback", timedelta(days=365)),
        overlap=table.duration("overlap", timedelta(hours=1)),
        workers=table.integer("workers", 4, minimum=1),
        regions=table.strings("regions", (default_region,)),
        owner_tag_keys=table.strings("owner_tag_keys", ("owner",)),
        signing_tags=signing,
        lake_event_data_store=lake,
    )
