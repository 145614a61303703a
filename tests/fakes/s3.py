"""S3-compatible object storage on 127.0.0.1: moto's server (the S3 API as boto3 speaks it),
for the storages of portal.settings with S3_BUCKET set (as MinIO in docker-compose.yml)."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass

ACCESS_KEY, SECRET_KEY, REGION = "portal-test", "portal-test-secret", "eu-west-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def storage_options(self, bucket: str) -> dict:
        """The options portal.settings gives both storages when S3_BUCKET is set."""
        return {"bucket_name": bucket, "endpoint_url": self.endpoint_url, "region_name": REGION,
                "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "addressing_style": "path",
                "default_acl": None, "querystring_auth": True}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def s3_server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
