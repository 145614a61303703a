from django.db import models

from portal.crypto import EncryptedJSONField, EncryptedTextField


class SecretNote(models.Model):
    """A client-owned row with encrypted fields, under row-level security like any real one."""

    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE)
    text = EncryptedTextField()
    payload = EncryptedJSONField(null=True, blank=True)
