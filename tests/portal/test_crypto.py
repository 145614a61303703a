"""Encryption at rest: round trip, tampering detected, key rotation with `manage.py reencrypt`."""
import base64

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.db import connection

from portal.crypto import DecryptionError, KeyRing, generate_key, keyring
from portal.rls import staff_scope
from tests.support.models import SecretNote

OLD, NEW = generate_key("old"), generate_key("new")


def _stored_key_ids(note):
    with connection.cursor() as cursor:
        cursor.execute("SELECT text, payload FROM support_secretnote WHERE id = %s", [note.pk])
        return [keyring().key_id_of(base64.b64decode(token)) for token in cursor.fetchone()]


def test_round_trip_and_the_ciphertext_reveals_nothing():
    ring = KeyRing(NEW)
    token = ring.encrypt(b"IBAN NL91ABNA0417164300")
    assert b"NL91" not in token
    assert ring.decrypt(token) == b"IBAN NL91ABNA0417164300"
    assert ring.encrypt(b"same") != ring.encrypt(b"same")  # a fresh nonce every time


def test_tampering_is_detected():
    ring = KeyRing(NEW)
    token = bytearray(ring.encrypt(b"amount=100.00"))
    token[-1] ^= 1
    with pytest.raises(DecryptionError, match="tampered"):
        ring.decrypt(bytes(token))


def test_a_value_under_an_unknown_key_names_the_key():
    token = KeyRing(OLD).encrypt(b"x")
    with pytest.raises(DecryptionError, match="'old'"):
        KeyRing(NEW).decrypt(token)


@pytest.mark.parametrize("spec, message", [
    ("", "no key"), ("nokey", "<id>:<base64 key>"), ("k:" + base64.urlsafe_b64encode(b"short").decode(), "32 bytes"),
])
def test_bad_key_configuration_fails_loudly(spec, message):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=message):
        KeyRing(spec)


def test_model_fields_are_encrypted_in_the_database(tenants, settings):
    settings.ENCRYPTION_KEYS = NEW
    with staff_scope():
        note = SecretNote.objects.create(client=tenants.client_a, text="api key sk_live_123",
                                         payload={"amount": "12.50", "currency": "EUR"})
        with connection.cursor() as cursor:
            cursor.execute("SELECT text, payload FROM support_secretnote WHERE id = %s", [note.pk])
            raw_text, raw_payload = cursor.fetchone()
        assert "sk_live" not in raw_text and "12.50" not in raw_payload
        fresh = SecretNote.objects.get(pk=note.pk)
    assert fresh.text == "api key sk_live_123"
    assert fresh.payload == {"amount": "12.50", "currency": "EUR"}


def test_encrypted_file_storage_round_trip_and_tamper(settings, tmp_path):
    settings.ENCRYPTION_KEYS = NEW
    storage = storages.create_storage({"BACKEND": "portal.crypto.EncryptedFileStorage",
                                       "OPTIONS": {"location": str(tmp_path)}})
    name = storage.save("invoices/INV-1.pdf", ContentFile(b"%PDF-1.7 secret invoice"))
    assert b"secret invoice" not in (tmp_path / name).read_bytes()
    with storage.open(name) as handle:
        assert handle.read() == b"%PDF-1.7 secret invoice"
    assert storage.size(name) == len(b"%PDF-1.7 secret invoice")
    # The name is bound into the tag: a file copied under another name is refused.
    (tmp_path / "invoices" / "INV-2.pdf").write_bytes((tmp_path / name).read_bytes())
    with pytest.raises(DecryptionError):
        storage.open("invoices/INV-2.pdf")


def test_rotation_reencrypts_rows_and_files_with_the_newest_key(tenants, settings, tmp_path):
    settings.ENCRYPTION_KEYS = OLD
    storage = storages["encrypted"]
    file_name = storage.save("rotation/statement.pdf", ContentFile(b"statement bytes"))
    with staff_scope():
        note = SecretNote.objects.create(client=tenants.client_b, text="webhook secret", payload={"k": 1})
        assert _stored_key_ids(note) == ["old", "old"]

    settings.ENCRYPTION_KEYS = f"{NEW},{OLD}"  # a new key first; the old one still decrypts
    with staff_scope():
        assert SecretNote.objects.get(pk=note.pk).text == "webhook secret"
    call_command("reencrypt", stdout=__import__("io").StringIO())

    settings.ENCRYPTION_KEYS = NEW  # the old key is gone: everything must still read
    with staff_scope():
        assert _stored_key_ids(note) == ["new", "new"]
        assert SecretNote.objects.get(pk=note.pk).payload == {"k": 1}
    with storage.open(file_name) as handle:
        assert handle.read() == b"statement bytes"
    storage.delete(file_name)
