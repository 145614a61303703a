"""Encryption at rest: AES-256-GCM with a key ring, model fields and a file storage.

ENCRYPTION_KEYS holds "<id>:<urlsafe base64 of 32 bytes>" items, newest first.
The newest key encrypts; every key decrypts. A token is

    b"pe1" | key id length (1 byte) | key id | 12-byte nonce | ciphertext+tag

so a token names the key that made it, and `manage.py reencrypt` moves
everything to the newest key.
"""
from __future__ import annotations

import base64
import json
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import models

MAGIC = b"pe1"


class DecryptionError(Exception):
    """The ciphertext was altered, truncated, or made with a key we do not have."""


class KeyRing:
    def __init__(self, spec: str):
        self.keys: dict[str, bytes] = {}
        self.order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id or len(key_id) > 32:
                raise ImproperlyConfigured("ENCRYPTION_KEYS items look like '<id>:<base64 key>'")
            try:
                key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError as exc:
                raise ImproperlyConfigured(f"ENCRYPTION_KEYS: key {key_id!r} is not base64") from exc
            if len(key) != 32:
                raise ImproperlyConfigured(f"ENCRYPTION_KEYS: key {key_id!r} must be 32 bytes (AES-256)")
            if key_id in self.keys:
                raise ImproperlyConfigured(f"ENCRYPTION_KEYS: key id {key_id!r} appears twice")
            self.keys[key_id] = key
            self.order.append(key_id)
        if not self.order:
            raise ImproperlyConfigured("ENCRYPTION_KEYS holds no key")

    @property
    def current_id(self) -> str:
        return self.order[0]

    def encrypt(self, plaintext: bytes, associated_data: bytes | None = None) -> bytes:
        key_id = self.current_id.encode()
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.current_id]).encrypt(nonce, plaintext, associated_data)
        return MAGIC + bytes([len(key_id)]) + key_id + nonce + sealed

    def key_id_of(self, token: bytes) -> str:
        if not token.startswith(MAGIC) or len(token) < len(MAGIC) + 1:
            raise DecryptionError("not an encrypted value")
        length = token[len(MAGIC)]
        return token[len(MAGIC) + 1: len(MAGIC) + 1 + length].decode("ascii", "replace")

    def decrypt(self, token: bytes, associated_data: bytes | None = None) -> bytes:
        key_id = self.key_id_of(token)
        if key_id not in self.keys:
            raise DecryptionError(f"encrypted with key {key_id!r}, which is not in ENCRYPTION_KEYS")
        start = len(MAGIC) + 1 + len(key_id)
        nonce, sealed = token[start:start + 12], token[start + 12:]
        try:
            return AESGCM(self.keys[key_id]).decrypt(nonce, sealed, associated_data)
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication (tampered or wrong key)") from exc

    def is_current(self, token: bytes) -> bool:
        return self.key_id_of(token) == self.current_id


@lru_cache(maxsize=4)
def _ring_for(spec: str) -> KeyRing:
    return KeyRing(spec)


def keyring() -> KeyRing:
    return _ring_for(settings.ENCRYPTION_KEYS)


def generate_key(key_id: str) -> str:
    """A new ENCRYPTION_KEYS item."""
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


# --- Model fields -------------------------------------------------------------
# Stored as text (base64 of the token) so values survive dumps and admin display.

class EncryptedTextField(models.TextField):
    description = "Text encrypted at rest with AES-256-GCM"

    def get_prep_value(self, value):
        if value is None:
            return None
        value = self.to_python(value)
        return base64.b64encode(keyring().encrypt(value.encode())).decode("ascii")

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return keyring().decrypt(base64.b64decode(value)).decode()

    def to_python(self, value):
        return value if value is None or isinstance(value, str) else str(value)


class EncryptedJSONField(models.TextField):
    description = "JSON encrypted at rest with AES-256-GCM"

    def get_prep_value(self, value):
        if value is None:
            return None
        payload = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str).encode()
        return base64.b64encode(keyring().encrypt(payload)).decode("ascii")

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return json.loads(keyring().decrypt(base64.b64decode(value)))

    def to_python(self, value):
        return value

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj))


def encrypted_fields():
    """Every (model, [field names]) pair that holds encrypted values."""
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields
                 if isinstance(f, (EncryptedTextField, EncryptedJSONField))]
        if names:
            yield model, names


# --- File storage ----------------------------------------------------------------

class EncryptingStorage:
    """Files are encrypted on save and decrypted on open; the stored bytes are tokens, so the
    disk or the object store never holds a plain document. The file name is bound into the tag,
    so a file moved under another name fails. Mixed into a storage (local disk, S3) that keeps
    the tokens (EncryptedFileStorage here; portal.object_storage.EncryptedS3Storage)."""

    def _save(self, name, content):
        if hasattr(content, "seek"):
            content.seek(0)
        token = keyring().encrypt(content.read(), associated_data=name.encode())
        return super()._save(name, ContentFile(token))

    def _token(self, name) -> bytes:
        with super()._open(name, "rb") as handle:
            return handle.read()

    def _open(self, name, mode="rb"):
        if "w" in mode or "a" in mode:
            raise ValueError("Encrypted files are written with save()")
        return ContentFile(keyring().decrypt(self._token(name), associated_data=name.encode()), name=name)

    def size(self, name):
        with self.open(name) as handle:
            return len(handle.read())

    def reencrypt(self, name) -> bool:
        """Re-encrypt one file with the newest key; False when it already is."""
        token = self._token(name)
        if keyring().is_current(token):
            return False
        fresh = keyring().encrypt(keyring().decrypt(token, associated_data=name.encode()),
                                  associated_data=name.encode())
        self._replace(name, fresh)
        return True

    def _replace(self, name, token: bytes) -> None:
        super()._save(name, ContentFile(token))  # an object store replaces a key in one write

    def all_names(self, folder: str = ""):
        try:
            folders, files = self.listdir(folder)
        except FileNotFoundError:
            return
        for file_name in files:
            yield f"{folder}/{file_name}" if folder else file_name
        for sub in folders:
            yield from self.all_names(f"{folder}/{sub}" if folder else sub)


class EncryptedFileStorage(EncryptingStorage, FileSystemStorage):
    """Encrypted files on the local disk (no S3 configured)."""

    def _replace(self, name, token: bytes) -> None:
        path = self.path(name)
        tmp = path + ".reencrypt"
        with open(tmp, "wb") as handle:
            handle.write(token)
        os.replace(tmp, path)  # a reader sees the old token or the new one, never half a file

