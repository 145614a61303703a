"""An invoice's status labels and a row of the invoice list, written from Python with format_html:
twenty rows through Django's template engine (a variable, tag or include resolved at a time) cost
more than the rest of the list page (issue 17, point 3). The markup is what the templates had;
tests/invoices/test_portal_pages.py and the browser tests read it.

    {% invoice_status invoice brief=True %}   the status, overdue and pending labels
    {% invoice_row invoice %}                  one <tr> of templates/invoices/_results.html
    {% filter_fields filter.form %}            the list's filter fields (templates/invoices/_filter_fields.html)
"""
from __future__ import annotations

import functools
import threading

from django import template
from django.template.loader import render_to_string
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language, gettext, gettext_noop

from invoices.models import Invoice
from portal.formatting import format_day, format_money

register = template.Library()


def _interpolated(message: str, **values) -> SafeString:
    """gettext(message) % values as {% blocktranslate %} makes it: the values escaped, the
    translation not. Callers mark the message with gettext_noop so that makemessages finds it."""
    return mark_safe(gettext(message) % {name: conditional_escape(value) for name, value in values.items()})


@functools.lru_cache(maxsize=16)
def _words(language: str | None) -> dict[str, str]:
    """What every row says the same, translated once per language (the cells' labels a phone shows
    beside each value, and the labels beside a status)."""
    return {word: gettext(word) for word in (
        gettext_noop("Number"), gettext_noop("Issue date"), gettext_noop("Due date"), gettext_noop("Total"),
        gettext_noop("Open"), gettext_noop("Status"), gettext_noop("Pay"), gettext_noop("Overdue"),
        gettext_noop("Payment pending"))}


@register.simple_tag
def invoice_status(invoice: Invoice, brief: bool = False) -> SafeString:
    """The status as the client reads it, "Overdue" beside it when past due, "Payment pending"
    while a gateway settles a payment and (unless brief) how much, how and since when."""
    words = _words(get_language())
    shown = invoice.display_status
    html = format_html('<span class="status status--{}">{}</span>', shown, shown.label)
    if invoice.shows_overdue:
        html += format_html(' <span class="status status--overdue">{}</span>', words["Overdue"])
    if invoice.amount_pending > 0 and invoice.status in invoice.PAYABLE:
        if shown != Invoice.DisplayStatus.PAYMENT_PENDING:
            html += format_html(' <span class="status status--payment_pending">{}</span>', words["Payment pending"])
        if not brief:
            html += format_html(' <small class="pending-note" data-testid="pending-note">{}</small>', _interpolated(
                gettext_noop("%(amount)s by %(method)s on %(date)s"), amount=format_money(invoice.amount_pending, invoice.currency),
                method=invoice.get_pending_method_display(), date=format_day(invoice.pending_since)))
    return html


ROW = """<tr class="invoice-row">
        <td class="cell--select"><label class="select-box"><input type="checkbox" name="invoice" value="{pk}"><span class="visually-hidden">{select}</span></label></td>
        <td class="cell--number" data-label="{number_label}"><a class="invoice-number" href="{detail}">{number}</a></td>
        <td class="cell--issued" data-label="{issued_label}"><span class="nowrap">{issued}</span></td>
        <td class="cell--due" data-label="{due_label}"><span class="nowrap">{due}</span></td>
        <td class="cell--total num" data-label="{total_label}">{total}</td>
        <td class="cell--open num" data-label="{open_label}">{open}</td>
        <td class="cell--status" data-label="{status_label}">{status}</td>
        <td class="cell--actions">
          {pay}
          <a class="button-link" href="{pdf}">PDF<span class="visually-hidden"> {number}</span></a>
        </td>
      </tr>"""


@register.simple_tag(takes_context=True)
def invoice_row(context, invoice: Invoice) -> SafeString:
    """One row of the invoice list: a box to select it, its number linking to its page, dates,
    amounts, status, and its Pay (for who may pay what is payable) and PDF links. The view gives
    each invoice its links (invoices.views.RowLinks)."""
    words = _words(get_language())
    pay = ""
    if context.get("can_pay") and invoice.status in invoice.PAYABLE and invoice.payable_balance > 0:
        pay = format_html('<a class="button-link" href="{}">{}<span class="visually-hidden"> {}</span></a>',
                          invoice.links.pay, words["Pay"], invoice.number)
    return format_html(
        ROW, pk=invoice.pk, select=_interpolated(gettext_noop("Select %(number)s"), number=invoice.number),
        number=invoice.number, detail=invoice.links.detail, pdf=invoice.links.pdf, pay=pay,
        issued=format_day(invoice.issue_date), due=format_day(invoice.due_date),
        total=format_money(invoice.total, invoice.currency), open=format_money(invoice.open_balance, invoice.currency),
        status=invoice_status(invoice),
        number_label=words["Number"], issued_label=words["Issue date"], due_label=words["Due date"],
        total_label=words["Total"], open_label=words["Open"], status_label=words["Status"])


# The filter fields' HTML by language and the values the URL gives them: nine widgets rendered
# through their templates cost about 2 ms of CPU a list page, and most pages ask for the same
# few sets of values (none, a status, a sort). A form with errors is rendered each time.
_FILTER_FIELDS: dict[tuple, SafeString] = {}
_FILTER_FIELDS_KEPT = 512
_FILTER_FIELDS_LOCK = threading.Lock()


@register.simple_tag
def filter_fields(form) -> SafeString:
    if form.is_bound and form.errors:
        return render_to_string("invoices/_filter_fields.html", {"form": form})
    key = (get_language(), form.is_bound,
           tuple((name, tuple(form.data.getlist(name)) if hasattr(form.data, "getlist") else form.data.get(name))
                 for name in form.fields))
    html = _FILTER_FIELDS.get(key)
    if html is None:
        html = render_to_string("invoices/_filter_fields.html", {"form": form})
        with _FILTER_FIELDS_LOCK:  # a server's threads share it
            if len(_FILTER_FIELDS) >= _FILTER_FIELDS_KEPT:
                del _FILTER_FIELDS[next(iter(_FILTER_FIELDS))]  # the oldest
            _FILTER_FIELDS[key] = html
    return html
