"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
"<webhook-id>.<webhook-timestamp>.<body>", keyed with the base64 secret after "whsec_",
sent as space-separated "v1,<base64 signature>" entries in webhook-signature."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

TOLERANCE_SECONDS = 5 * 60
PREFIX = "whsec_"


class SignatureError(Exception):
    """Why a request is not accepted as signed by the connection."""


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    encoded = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    return base64.b64decode(encoded)


def verify_secret(secret: str) -> None:
    """ValueError unless `secret` is whsec_ and base64 of at least 24 bytes."""
    if not secret.startswith(PREFIX):
        raise ValueError("a signing secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (ValueError, TypeError):
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 24:
        raise ValueError("the key is shorter than 24 bytes")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender adds; for the demo loader and tests."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}


def verify(secrets_: list[str], headers, body: bytes, now: float | None = None) -> None:
    """Raise SignatureError unless one of the secrets signed this body recently."""
    msg_id, timestamp, signatures = (headers.get("webhook-id"), headers.get("webhook-timestamp"),
                                     headers.get("webhook-signature"))
    missing = [name for name, value in (("webhook-id", msg_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", signatures)) if not value]
    if missing:
        raise SignatureError(f"missing header: {', '.join(missing)}")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from None
    now = time.time() if now is None else now
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        raise SignatureError(f"webhook-timestamp is more than {TOLERANCE_SECONDS // 60} minutes "
                             f"{'old' if sent_at < now else 'in the future'}")
    if not secrets_:
        raise SignatureError("the connection has no signing secret")
    offered = [entry.split(",", 1)[1] for entry in signatures.split() if entry.startswith("v1,")]
    for secret in secrets_:
        expected = sign(secret, msg_id, sent_at, body).split(",", 1)[1]
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise SignatureError("signature does not match")
