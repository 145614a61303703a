"""Files in S3-compatible object storage (portal.settings: S3_BUCKET), encrypted ones included."""
from __future__ import annotations

from storages.backends.s3 import S3Storage

from portal.crypto import EncryptingStorage


class EncryptedS3Storage(EncryptingStorage, S3Storage):
    """Documents encrypted here, before the bytes leave the process: the bucket holds tokens only.
    Every document's name is new (portal: invoices.documents.render), so a save never has to
    look for a free name first (one request less)."""
