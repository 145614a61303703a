"""The project package: settings, URLs, Celery, tenancy, RLS, encryption and the audit log."""
from portal.celery import app as celery_app

__all__ = ["celery_app"]
