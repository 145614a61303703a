"""The portal's invoice list filters and sorting (django-filter); they live in the URL."""
from __future__ import annotations

from dataclasses import dataclass

import django_filters
from django import forms
from django.db.models import Q
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from invoices.models import Invoice

STATUS_CHOICES = [
    ("open", _("Open")), ("partially_paid", _("Partially paid")), ("overdue", _("Overdue")),
    ("paid", _("Paid")), ("void", _("Void")),
]
DATE = forms.DateInput(attrs={"type": "date"})
AMOUNT = forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"})
DEFAULT_SORT = "-date"


@dataclass(frozen=True)
class Column:
    """A sortable column of the invoice table: its `sort` parameter, header, and the direction
    a first click sorts in (dates newest first, amounts largest first)."""
    key: str
    field: str
    label: str
    first: str  # "" ascending or "-" descending
    numeric: bool = False


COLUMNS = [
    Column("number", "number", _("Number"), ""),
    Column("date", "issue_date", _("Issue date"), "-"),
    Column("due", "due_date", _("Due date"), ""),
    Column("total", "total", _("Total"), "-", numeric=True),
    Column("open", "open_balance", _("Open"), "-", numeric=True),
    Column("status", "status", _("Status"), ""),
]
SORT_CHOICES = {prefix + column.key for column in COLUMNS for prefix in ("", "-")}
# django-filter names an ascending choice by its model field and a descending one by "-" + its parameter.
SORT_LABELS = {
    "number": _("Number (A to Z)"), "-number": _("Number (Z to A)"),
    "issue_date": _("Issue date (oldest first)"), "-date": _("Issue date (newest first)"),
    "due_date": _("Due date (earliest first)"), "-due": _("Due date (latest first)"),
    "total": _("Total (smallest first)"), "-total": _("Total (largest first)"),
    "open_balance": _("Open (smallest first)"), "-open": _("Open (largest first)"),
    "status": _("Status (A to Z)"), "-status": _("Status (Z to A)"),
}


class InvoiceOrdering(django_filters.OrderingFilter):
    """Sorting by one column, ties broken by the newest invoice so that pages never overlap."""

    def filter(self, qs, value):
        qs = super().filter(qs, value)
        return qs.order_by(*qs.query.order_by, "-id")


class InvoiceFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label=_("Search number or reference"), method="search")
    status = django_filters.ChoiceFilter(label=_("Status"), choices=STATUS_CHOICES, method="by_status",
                                         empty_label=_("All statuses"))
    issued_from = django_filters.DateFilter(field_name="issue_date", lookup_expr="gte", label=_("Issued from"),
                                            widget=DATE)
    issued_to = django_filters.DateFilter(field_name="issue_date", lookup_expr="lte", label=_("Issued until"),
                                          widget=DATE)
    due_from = django_filters.DateFilter(field_name="due_date", lookup_expr="gte", label=_("Due from"), widget=DATE)
    due_to = django_filters.DateFilter(field_name="due_date", lookup_expr="lte", label=_("Due until"), widget=DATE)
    amount_min = django_filters.NumberFilter(field_name="total", lookup_expr="gte", label=_("Amount from"),
                                             widget=AMOUNT)
    amount_max = django_filters.NumberFilter(field_name="total", lookup_expr="lte", label=_("Amount up to"),
                                             widget=AMOUNT)
    sort = InvoiceOrdering(label=_("Sort by"), empty_label=None,
                           fields=[(column.field, column.key) for column in COLUMNS], field_labels=SORT_LABELS)

    class Meta:
        model = Invoice
        fields: list[str] = []

    def search(self, queryset, name, value):
        return queryset.filter(Q(number__icontains=value) | Q(purchase_order__icontains=value)
                               | Q(credit_notes__number__icontains=value)).distinct()

    def by_status(self, queryset, name, value):
        if value == "overdue":
            return queryset.overdue()
        return queryset.filter(status=value)


def invoice_filter(params: QueryDict, queryset) -> InvoiceFilter:
    """The filters as the URL gives them, sorted newest first when the URL names no order."""
    data = params.copy()
    if data.get("sort") not in SORT_CHOICES:
        data["sort"] = DEFAULT_SORT
    return InvoiceFilter(data, queryset=queryset)



def active_filter_count(params: QueryDict) -> int:
    """How many filters the URL sets (sorting and the page are not filters)."""
    return sum(1 for name in InvoiceFilter.base_filters if name != "sort" and params.get(name))


@dataclass(frozen=True)
class SortHeader:
    label: str
    query: str  # the list's query string with this column's next order
    aria_sort: str  # "ascending", "descending" or "" (not sorted by this column)
    numeric: bool


def sort_headers(params: QueryDict) -> list[SortHeader]:
    """Each column's header: a click sorts by it, a second click reverses; the filters stay."""
    current = params.get("sort") if params.get("sort") in SORT_CHOICES else DEFAULT_SORT
    headers = []
    for column in COLUMNS:
        if current.lstrip("-") == column.key:
            descending = current.startswith("-")
            aria_sort, following = ("descending", column.key) if descending else ("ascending", f"-{column.key}")
        else:
            aria_sort, following = "", column.first + column.key
        query = params.copy()
        query.pop("page", None)
        query["sort"] = following
        headers.append(SortHeader(label=column.label, query=query.urlencode(), aria_sort=aria_sort,
                                  numeric=column.numeric))
    return headers
