"""The portal's invoice list filters (django-filter); they live in the URL."""
import django_filters
from django import forms
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from invoices.models import Invoice

STATUS_CHOICES = [
    ("open", _("Open")), ("partially_paid", _("Partially paid")), ("overdue", _("Overdue")),
    ("paid", _("Paid")), ("void", _("Void")),
]
DATE = forms.DateInput(attrs={"type": "date"})
AMOUNT = forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"})


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
    sort = django_filters.OrderingFilter(
        label=_("Sort by"), empty_label=_("Newest first"),
        fields=(("issue_date", "date"), ("due_date", "due"), ("total", "amount"), ("status", "status")),
        field_labels={"issue_date": _("Issue date"), "due_date": _("Due date"), "total": _("Amount"),
                      "status": _("Status")})

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
