"""The portal's invoice list filters and sorting (django-filter); they live in the URL."""
from __future__ import annotations

import datetime
import decimal
import functools
from dataclasses import dataclass

import django_filters
from django import forms
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.forms.renderers import Jinja2
from django.db.models import Count, F, Lookup, Q, Subquery, Value, Window
from django.db.models.functions import Upper
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from invoices.models import CreditNote, Invoice
from invoices.selectors import client_invoices
from portal.compiled import CompiledQuery
from portal.models import Client

STATUS_CHOICES = [
    ("open", _("Open")), ("partially_paid", _("Partially paid")), ("partly_credited", _("Partly credited")),
    ("overdue", _("Overdue")), ("paid", _("Paid")), ("void", _("Void")),
]
DATE = forms.DateInput(attrs={"type": "date"})
AMOUNT = forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"})
DEFAULT_SORT = "-date"
PAGE_SIZE = 20  # invoices a page of the list


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
    """Sorting by one column, ties broken by the invoice's id in the same direction, so that pages
    never overlap and one index per column, (client, column, id), serves the column both ways
    (migration 0014): a page is the next 20 entries of it, not a sort of all the client's invoices."""

    def filter(self, qs, value):
        qs = super().filter(qs, value)
        descending = str(qs.query.order_by[0]).startswith("-") if qs.query.order_by else True
        return qs.order_by(*qs.query.order_by, "-id" if descending else "id")


class AnyOf(Lookup):
    """`AnyOf(F("pk"), Subquery(...))`: `= ANY(ARRAY(subquery))`, the subquery's values found once."""
    lookup_name = "any_of"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = compiler.compile(self.rhs)  # a subquery, in its parentheses
        return f"{lhs} = ANY(ARRAY{rhs})", (*lhs_params, *rhs_params)


class FilterForm(forms.Form):
    """The list's filter form, its widgets rendered by Jinja2 from Django's own widget templates:
    the same controls, but Django's template engine renders a select option by option through
    an include each, which was the biggest single cost of the list page."""
    default_renderer = Jinja2()


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
        form = FilterForm

    def __init__(self, *args, client=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.client = client  # whose invoices: their credit notes alone are searched

    def search(self, queryset, name, value):
        # Which invoices match is read from the index of numbers alone (invoice_client_number
        # holds the number, the search key and the status beside the id), then the page reads
        # those. A credit note's number by a subquery, not a join: a join repeats an invoice per
        # credit note and needs a DISTINCT over every column of the page.
        credited = CreditNote.objects.filter(number__icontains=value)
        if self.client is not None:
            credited = credited.filter(client=self.client)
        # The number and purchase order as PostgreSQL keeps them in capitals (Invoice.search_key).
        matching = queryset.order_by().filter(Q(search_key__contains=Upper(Value(value)))
                                              | Q(pk__in=credited.values("invoice_id")))
        # = ANY(ARRAY(...)), not IN (...): the matches are found first, then read by their ids. With
        # IN, PostgreSQL, which cannot tell how many a pattern matches, may read every one of the
        # client's invoices to join them with the matches (seen at 10,000: 23 ms instead of 7).
        return queryset.filter(AnyOf(F("pk"), Subquery(matching.values("pk"))))

    def by_status(self, queryset, name, value):
        # As the list labels them (Invoice.display_status): a balance lowered only by a credit
        # note is "Partly credited", not "Partially paid".
        if value == "overdue":
            return queryset.overdue()
        if value == "partially_paid":
            return queryset.filter(status=value, amount_paid__gt=0)
        if value == "partly_credited":
            return queryset.filter(status=Invoice.Status.PARTIALLY_PAID, amount_paid=0, amount_credited__gt=0)
        return queryset.filter(status=value)


def invoice_filter(params: QueryDict, queryset, *, client=None) -> InvoiceFilter:
    """The filters as the URL gives them, sorted newest first when the URL names no order."""
    data = params.copy()
    if data.get("sort") not in SORT_CHOICES:
        data["sort"] = DEFAULT_SORT
    return InvoiceFilter(data, queryset=queryset, client=client)



class InvoicePaginator(Paginator):
    """A page of the list found by its invoices' ids first, then those rows read: the ids come
    from an index alone in the list's order (the default order's index holds every column a
    filter reads, migration 0014), so neither the invoices a filter leaves out nor those of the
    pages before (OFFSET) are read from the table, only the page's own."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        ids = self.object_list.values("pk")[bottom:top]
        return self._get_page(self.object_list.filter(pk__in=ids), number, self)


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


# The list's reads compiled once per shape (portal.compiled): which filters are set, the status
# and the order chosen, and the page. A list page otherwise spends more CPU building its two
# statements through django-filter and the ORM than PostgreSQL spends answering them. A search's
# text is bound inside its patterns, and a search is not prepared: the best plan for a pattern
# that matches one invoice is not the best for one that matches thousands.
_BOUND_FILTERS = {"q": str, "issued_from": datetime.date, "issued_to": datetime.date, "due_from": datetime.date,
                  "due_to": datetime.date, "amount_min": decimal.Decimal, "amount_max": decimal.Decimal}


def _shape_filterset(client_id, *, status: str | None, sort: str, values: dict) -> InvoiceFilter:
    data = QueryDict(mutable=True)
    data["sort"] = sort
    if status:
        data["status"] = status
    for name, value in values.items():
        data[name] = value.isoformat() if isinstance(value, datetime.date) else str(value)
    # The invoices the list shows, as the view reads them (client_invoices, without what the table
    # does not show); the client by its id alone, which is bound.
    client = Client(pk=client_id)
    invoices = client_invoices(client=client).select_related(None).prefetch_related(None)
    filterset = InvoiceFilter(data, queryset=invoices, client=client)
    if set(filterset.form.errors) & ({"status", "sort"} | set(values)):
        raise ValueError(f"the list's filters refused their own values: {filterset.form.errors}")
    return filterset


FIRST_WITH_COUNT = 0  # _compiled_list's page: the first page, each row with the count of all


def _first_page(number) -> bool:
    """Whether Paginator.validate_number would answer the first page without the count: 1, or
    not a whole number."""
    try:
        return int(number) == 1
    except (TypeError, ValueError):
        return True


@functools.lru_cache(maxsize=512)
def _compiled_list(status: str | None, sort: str, names: tuple[str, ...], page: int | None) -> CompiledQuery:
    """The count of the shape's invoices (page None), the rows of one of its pages, or the
    first page's rows each with the count of all in `matching` (page FIRST_WITH_COUNT)."""
    kinds = {name: _BOUND_FILTERS[name] for name in names}

    def build(client_id, **values):
        rows = _shape_filterset(client_id, status=status, sort=sort, values=values).qs
        if page == FIRST_WITH_COUNT:
            return rows.annotate(matching=Window(Count("pk")))[:PAGE_SIZE]
        if page is None:
            # Grouped by the one client: a row with its count, or no row for none.
            return rows.order_by().values("client_id").annotate(n=Count("pk"))
        bottom = (page - 1) * PAGE_SIZE
        return rows.filter(pk__in=rows.values("pk")[bottom:bottom + PAGE_SIZE])

    # Never prepared: after five runs PostgreSQL may keep one generic plan for every client, made
    # for a client of average size. For a client with 50,000 invoices that plan sorted by due
    # date, open amount or total in 25 ms where a plan for its own size took 18 (bench/README.md,
    # "50,000 invoices"); planning each time costs about 0.3 ms.
    return CompiledQuery(build, client_id=int, prepare=False, **kinds)


def compiled_list_page(filterset: InvoiceFilter, *, client, number):
    """The page of the client's invoices the (bound) filterset asks for, read by statements
    compiled once per shape, as InvoicePaginator(filterset.qs, PAGE_SIZE).get_page(number)
    reads it. Every filter but the status and the sort is bound (_BOUND_FILTERS; a test holds
    InvoiceFilter to that)."""
    filterset.form.is_valid()  # cleaned_data holds the valid fields only: an invalid filter is left out
    cleaned = {name: value for name, value in filterset.form.cleaned_data.items()
               if value not in django_filters.constants.EMPTY_VALUES}
    status, sort = cleaned.pop("status", None), (cleaned.pop("sort", None) or [DEFAULT_SORT])[0]
    names = tuple(sorted(cleaned))
    if "q" in names and _first_page(number):
        # A search's first page and the count of its matches in one statement: the pattern is
        # matched against the client's invoices once, not once for the count and again for the page.
        rows = _compiled_list(status, sort, names, FIRST_WITH_COUNT).list(client_id=client.pk, **cleaned)
        paginator = InvoicePaginator([], PAGE_SIZE)
        paginator.__dict__["count"] = rows[0].matching if rows else 0  # Paginator.count, known already
        return paginator._get_page(rows, 1, paginator)
    counted = _compiled_list(status, sort, names, None).list(client_id=client.pk, **cleaned)
    paginator = InvoicePaginator([], PAGE_SIZE)
    paginator.__dict__["count"] = counted[0]["n"] if counted else 0  # Paginator.count, known already
    try:
        number = paginator.validate_number(number)
    except PageNotAnInteger:
        number = 1
    except EmptyPage:
        number = paginator.num_pages
    rows = _compiled_list(status, sort, names, number).list(client_id=client.pk, **cleaned) if paginator.count else []
    return paginator._get_page(rows, number, paginator)
