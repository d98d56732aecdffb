"""A real S3 server for the media tests: moto in server mode, in a process of its own on a free port.

Darkroom speaks HTTP to it exactly as to AWS or any S3-compatible store. Each test gets a bucket of its
own; `MediaStore` says which store a test runs on and holds the settings that select it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.live_server import free_port
from tests.support.processes import stop_process

# Runs a test on the local disk and on a bucket of moto: the `media_store` fixture (tests/conftest.py) reads it.
both_stores = pytest.mark.parametrize("media_store", ["local", "s3"], indirect=True)

# moto accepts any credentials; these keep the tests off whatever the machine has configured.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "darkroom-test",
    "AWS_SECRET_ACCESS_KEY": "darkroom-test-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_server() -> Iterator[str]:
    """Run `python -m moto.server` until the generator is closed; yields its endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # moto logs a line per request: into a file, since a pipe nobody reads fills up and then blocks the server.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **CREDENTIALS},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{endpoint}/moto-api/", timeout=1)
                    break
                except httpx.HTTPError:
                    if process.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(f"moto exited: {log.read().decode(errors='replace')}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError("moto did not answer within 30 s") from None
                    time.sleep(0.05)
            yield endpoint
        finally:
            stop_process(process, timeout=10)


@dataclass
class MediaStore:
    """The store a test's server keeps media in: "local" (a directory) or "s3" (a bucket on moto)."""

    kind: str
    endpoint: str | None = None
    bucket: str | None = None
    prefix: str = "media"
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def s3(cls, endpoint: str) -> MediaStore:
        bucket = f"darkroom-{uuid.uuid4().hex[:12]}"
        store = cls("s3", endpoint, bucket)
        store.client().create_bucket(Bucket=bucket)
        store.settings = {"media_storage_url": f"s3://{bucket}/{store.prefix}", "s3_endpoint_url": endpoint}
        return store

    def client(self) -> Any:
        """A plain boto3 client on the bucket's server, for looking behind Darkroom's back."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_REGION"],
        )

    def make_public(self) -> None:
        """Let anyone GET the objects, as a bucket behind MEDIA_BASE_URL would."""
        assert self.bucket is not None
        statement = {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{self.bucket}/*",
        }
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        self.client().put_bucket_policy(Bucket=self.bucket, Policy=policy)

    def multipart_uploads(self) -> list[dict[str, Any]]:
        assert self.bucket is not None
        return list(self.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))

    def object(self, key: str) -> dict[str, Any]:
        """The stored object's HEAD: its metadata, content type and caching."""
        assert self.bucket is not None
        return dict(self.client().head_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}"))
