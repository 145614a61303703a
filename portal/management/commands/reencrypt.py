"""Re-encrypt every encrypted field and file with the newest key in ENCRYPTION_KEYS."""
import base64

from django.core.files.storage import storages
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from portal.adapters import mfa_authenticators_reencrypt
from portal.crypto import encrypted_fields, keyring
from portal.models import AuditEvent
from portal.rls import staff_scope
from portal.services import audit_record

BATCH = 500


class Command(BaseCommand):
    help = ("Re-encrypt everything with the newest key (the first in ENCRYPTION_KEYS). "
            "Run after adding a key; then the old key can be removed.")

    def handle(self, *args, **options):
        ring = keyring()
        rows = files = 0
        for model, names in encrypted_fields():
            columns = [model._meta.get_field(name).column for name in names]
            with staff_scope():
                pks = list(model._base_manager.values_list("pk", flat=True).order_by("pk"))
            for start in range(0, len(pks), BATCH):
                with transaction.atomic(), staff_scope():
                    stale = self._stale(model, columns, names, pks[start:start + BATCH], ring)
                    for obj in model._base_manager.filter(pk__in=stale):
                        obj.save(update_fields=stale[obj.pk])  # save() encrypts with the newest key
                    rows += len(stale)
                self.stdout.write(f"{model._meta.label}: {min(start + BATCH, len(pks))}/{len(pks)} checked")
        # Two-factor secrets live inside allauth's JSON column (portal.adapters.MFAAdapter).
        authenticators = mfa_authenticators_reencrypt()
        rows += authenticators
        self.stdout.write(f"two-factor authenticators: {authenticators} re-encrypted")
        storage = storages["encrypted"]
        names = list(storage.all_names())
        for index, name in enumerate(names, 1):
            files += storage.reencrypt(name)
            if index % 100 == 0 or index == len(names):
                self.stdout.write(f"files: {index}/{len(names)} checked")
        with transaction.atomic(), staff_scope():
            audit_record(action=AuditEvent.Action.KEYS_ROTATED,
                         details={"key": ring.current_id, "rows": rows, "files": files})
        self.stdout.write(self.style.SUCCESS(
            f"re-encrypted {rows} rows and {files} files with key {ring.current_id}"))

    @staticmethod
    def _stale(model, columns, names, pks, ring) -> dict:
        """{pk: [field names still under an old key]}, read raw and locked."""
        table = connection.ops.quote_name(model._meta.db_table)
        pk_column = connection.ops.quote_name(model._meta.pk.column)
        selected = ", ".join(connection.ops.quote_name(column) for column in columns)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {pk_column}, {selected} FROM {table} WHERE {pk_column} = ANY(%s) FOR UPDATE",
                           [list(pks)])
            result = {}
            for pk, *tokens in cursor.fetchall():
                old = [name for name, token in zip(names, tokens)
                       if token is not None and not ring.is_current(base64.b64decode(token))]
                if old:
                    result[pk] = old
        return result
