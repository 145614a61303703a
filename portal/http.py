"""Responses shared by every app."""
from django.http import HttpResponse


def download_response(content: bytes, *, file_name: str, content_type: str) -> HttpResponse:
    """A file download: named, sized, and never kept by a shared cache (it is someone's invoice)."""
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response["Content-Length"] = str(len(content))
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
