"""The ``s3`` / ``minio`` blob storage backend: any S3-compatible service through boto3."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import DocumentError, StorageError, StorageUnavailable
from .storage import check_key


class S3BlobStorage:
    """An S3-compatible store (AWS S3, MinIO, ...) through boto3, path-style addressing.

    Where objects go:

    * with a configured ``bucket``: that one bucket, key ``[<prefix_path>/]<kb>/<name>``;
      upstream omits ``<kb>`` when there is no prefix_path, which makes two knowledge
      bases' ``report.pdf`` overwrite each other: ragfleet always keeps it;
    * without: a bucket per knowledge base (created on first put, as upstream's MinIO does),
      key ``<name>``, or ``<prefix_path>/<kb>/<name>`` with a prefix_path (as upstream).
    """

    def __init__(self, client: Any, *, bucket: str = "", prefix_path: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix_path = prefix_path.strip("/")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> S3BlobStorage:
        return cls(
            s3_client(config),
            bucket=str(config.get("bucket") or ""),
            prefix_path=str(config.get("prefix_path") or ""),
        )

    def location(self, bucket: str, name: str) -> tuple[str, str]:
        """(S3 bucket, key) of the object (bucket, name)."""
        check_key(bucket, name)
        if self.bucket:
            return self.bucket, "/".join(p for p in (self.prefix_path, bucket, name) if p)
        if self.prefix_path:
            return bucket, f"{self.prefix_path}/{bucket}/{name}"
        return bucket, name

    def put(self, bucket: str, name: str, data: bytes) -> None:
        s3_bucket, key = self.location(bucket, name)
        with _s3_errors("put", s3_bucket, key):
            try:
                self.client.put_object(Bucket=s3_bucket, Key=key, Body=data)
                return
            except self.client.exceptions.NoSuchBucket:
                self._create_bucket(s3_bucket)
            self.client.put_object(Bucket=s3_bucket, Key=key, Body=data)

    def get(self, bucket: str, name: str) -> bytes:
        s3_bucket, key = self.location(bucket, name)
        with _s3_errors("get", s3_bucket, key):
            try:
                response = self.client.get_object(Bucket=s3_bucket, Key=key)
            except (self.client.exceptions.NoSuchKey, self.client.exceptions.NoSuchBucket):
                raise DocumentError(f"document s3://{s3_bucket}/{key} does not exist") from None
            return response["Body"].read()

    def delete(self, bucket: str, name: str) -> None:
        s3_bucket, key = self.location(bucket, name)
        missing = self.client.exceptions.NoSuchBucket
        with _s3_errors("delete", s3_bucket, key), contextlib.suppress(missing):
            self.client.delete_object(Bucket=s3_bucket, Key=key)

    def _create_bucket(self, s3_bucket: str) -> None:
        """Create a bucket; losing a race to another executor is fine."""
        region = self.client.meta.region_name
        extra = {}
        if region and region != "us-east-1":  # us-east-1 refuses an explicit constraint
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou):
            self.client.create_bucket(Bucket=s3_bucket, **extra)


def s3_client(config: Mapping[str, Any]) -> Any:
    """A boto3 S3 client from an ``s3`` or ``minio`` config section.

    Accepts both spellings: ``access_key``/``secret_key``/``endpoint_url`` (upstream's s3
    section) and ``user``/``password``/``host`` (its minio section, ``host:port``, plain
    HTTP unless ``secure`` is true). Without keys, boto3's usual chain (environment,
    instance profile) applies. A session of its own: boto3's default one is shared state.
    """
    import boto3
    from botocore.config import Config

    endpoint = config.get("endpoint_url") or None
    if not endpoint and config.get("host"):
        scheme = "https" if config.get("secure") else "http"
        endpoint = f"{scheme}://{config['host']}"
    settings = Config(
        signature_version=_signature_version(config.get("signature_version")),
        s3={"addressing_style": config.get("addressing_style") or "path"},
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.get("region") or "us-east-1",
        aws_access_key_id=config.get("access_key") or config.get("user") or None,
        aws_secret_access_key=config.get("secret_key") or config.get("password") or None,
        aws_session_token=config.get("session_token") or None,
        config=settings,
    )


def _signature_version(value: str | None) -> str:
    """configc allows v2/v4/s3/s3v4; botocore knows ``s3`` (SigV2) and ``s3v4``."""
    return {"v2": "s3", "v4": "s3v4"}.get(value or "s3v4", value or "s3v4")


@contextlib.contextmanager
def _s3_errors(operation: str, bucket: str, key: str) -> Iterator[None]:
    """botocore's exceptions in ours: unreachable or 5xx -> StorageUnavailable, the rest ->
    StorageError, both naming the object."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    where = f"S3 {operation} s3://{bucket}/{key}"
    try:
        yield
    except (ConnectionError, HTTPClientError) as exc:
        raise StorageUnavailable(f"{where}: {exc}") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{where}: HTTP {status} {error.get('Code', '')}: {error.get('Message', '')}"
        raise (StorageUnavailable if status >= 500 else StorageError)(text) from exc
    except BotoCoreError as exc:
        raise StorageError(f"{where}: {exc}") from exc
