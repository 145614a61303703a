"""Build and send canonical accounting events, signed as an accounting system would."""
import itertools
import json
import time

from integrations.signing import signed_headers
from portal.models import Job
from portal.rls import staff_scope

_ids = itertools.count(1)

CLIENT = {"external_id": "C-100", "name": "Northwind Traders B.V.", "kvk_number": "34567890",
          "vat_number": "NL003456789B01", "billing_email": "finance@northwind.test",
          "address": {"line": "Damrak 50", "postal_code": "1012 LM", "city": "Amsterdam", "country": "NL"},
          "default_currency": "EUR", "locale": "nl"}


def invoice_data(external_id="INV-EXT-1", number="2026-0001", updated_at="2026-11-01T10:00:00Z", **overrides):
    data = {
        "external_id": external_id, "number": number, "client_external_id": "C-100",
        "issue_date": "2026-11-01", "due_date": "2026-12-01",
        "payment_terms": {"days": 30, "text": "30 days net"}, "currency": "EUR", "purchase_order": "PO-77",
        "lines": [
            {"description": "Consulting", "quantity": "10", "unit": "hour", "unit_price": "95.00", "tax_rate": "21"},
            {"description": "Books", "quantity": "3", "unit": "piece", "unit_price": "19.99", "discount_percent": "10",
             "tax_rate": "9"},
        ],
        "tax_breakdown": [{"rate": "9", "base": "53.97", "tax": "4.86"}, {"rate": "21", "base": "950.00", "tax": "199.50"}],
        "subtotal": "1003.97", "tax_total": "204.36", "total": "1208.33", "updated_at": updated_at,
    }
    data.update(overrides)
    return data


def event(type_, data):
    return {"type": type_, "occurred_at": "2026-11-01T10:00:00Z", "data": data}


def post(http, connection_slug, secret, payload, *, msg_id=None, timestamp=None, raw=None, **extra):
    """`extra`: more WSGI environ for the request (REMOTE_ADDR, ...)."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = signed_headers(secret, msg_id or f"msg_{next(_ids)}", body,
                             timestamp=int(time.time()) if timestamp is None else timestamp)
    return http.post(f"/webhooks/accounting/{connection_slug}/", data=body, content_type="application/json",
                     headers=headers, **extra)


def job_for(response):
    """The job an accepted webhook left (the answer names the stored request)."""
    with staff_scope():
        return Job.objects.get(key=f"webhook:{response.json()['webhook']}")
