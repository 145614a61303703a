from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

METHOD_LABELS = {"ideal": _("iDEAL"), "card": _("Card"), "sepa_direct_debit": _("SEPA direct debit")}


class CheckoutForm(forms.Form):
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)
    method = forms.ChoiceField(label=_("Pay with"), widget=forms.RadioSelect)
    wants_mandate = forms.BooleanField(
        label=_("Also collect my future invoices automatically by SEPA direct debit on their due date"),
        required=False)

    def __init__(self, *args, invoices, gateway, **kwargs):
        super().__init__(*args, **kwargs)
        self.invoices = invoices
        self.fields["method"].choices = [(m, METHOD_LABELS[m]) for m in gateway.methods()]
        self.fields["method"].initial = gateway.methods()[0] if gateway.methods() else None
        if gateway.provider != "mollie" or not gateway.sepa_direct_debit:
            del self.fields["wants_mandate"]
        for invoice in invoices:
            self.fields[f"amount_{invoice.pk}"] = forms.DecimalField(
                label=invoice.number, max_digits=14, decimal_places=2, min_value=Decimal("0.01"),
                max_value=invoice.open_balance, initial=invoice.open_balance,
                disabled=not gateway.allow_partial,
                widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}))

    def requested(self):
        return [(invoice, self.cleaned_data[f"amount_{invoice.pk}"]) for invoice in self.invoices]
