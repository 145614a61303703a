"""The checkout form: which invoices, how much of each (typed the way the client's language writes
money), and how to pay. Amounts are read with portal.formatting.parse_money and checked per
invoice by payments.services.amount_problem, the rule checkout_start applies again under lock."""
from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from invoices.money import round_money
from payments.services import amount_problem
from portal.formatting import MoneyParseError, format_money, format_number, parse_money

METHOD_LABELS = {"ideal": _("iDEAL"), "card": _("Card"), "sepa_direct_debit": _("SEPA direct debit")}


def amount_text(amount: Decimal) -> str:
    """An amount as the client's language types it, for an input field: `10,50` (nl), `10.50` (en)."""
    return format_number(amount, places=2)


class MoneyInput(forms.TextInput):
    """A text field for money: the phone shows its decimal keypad; no type=number (whose
    browser-side parsing reads a Dutch `10,50` as 1050 or nothing at all)."""

    def __init__(self, attrs=None):
        super().__init__({"inputmode": "decimal", "autocomplete": "off", "spellcheck": "false",
                          "class": "amount-input", **(attrs or {})})


class MoneyField(forms.CharField):
    """An amount typed in the client's language, cleaned to a Decimal with two places."""

    widget = MoneyInput

    def to_python(self, value):
        if isinstance(value, Decimal):
            return round_money(value)
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return parse_money(value)
        except MoneyParseError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc


class IbanField(forms.CharField):
    """An IBAN as people type it (spaces, lower case), checked with its check digits and the
    country's length (python-stdnum), kept compact: NL91ABNA0417164300."""

    def __init__(self, **kwargs):
        super().__init__(max_length=42, widget=forms.TextInput(attrs={
            "autocomplete": "off", "spellcheck": "false", "autocapitalize": "characters", "class": "iban-input"}),
            **kwargs)

    def to_python(self, value):
        from stdnum import iban
        from stdnum.exceptions import ValidationError as StdnumError

        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            return iban.validate(value)
        except StdnumError:
            raise forms.ValidationError(_("This is not a valid IBAN: please check the letters and digits."),
                                        code="invalid")


class CheckoutForm(forms.Form):
    """What is paid, how, and (for SEPA direct debit signed in the portal) the account and the
    client's consent. `card_token` (Mollie Components) and `embedded` (Stripe's script is ready)
    are set by the page's script: without it the same form pays on the gateway's page."""

    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)
    method = forms.ChoiceField(label=_("Pay with"), widget=forms.RadioSelect)
    wants_mandate = forms.BooleanField(
        label=_("Also collect my future invoices automatically by SEPA direct debit on their due date"),
        required=False)
    card_token = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
    embedded = forms.BooleanField(required=False, widget=forms.HiddenInput)
    account_holder = forms.CharField(label=_("Account holder"), required=False, max_length=70,
                                     widget=forms.TextInput(attrs={"autocomplete": "name"}))
    iban = IbanField(label=_("IBAN"), required=False)
    mandate_consent = forms.BooleanField(label=_("I authorise this direct debit"), required=False)
    collects_all = forms.BooleanField(
        label=_("Also collect my future invoices with this mandate on their due date"), required=False)

    def __init__(self, *args, invoices, gateway, **kwargs):
        super().__init__(*args, **kwargs)
        self.invoices = invoices
        self.gateway = gateway
        self.fields["method"].choices = [(m, METHOD_LABELS[m]) for m in gateway.methods()]
        self.fields["method"].initial = gateway.methods()[0] if gateway.methods() else None
        if gateway.provider != "mollie" or not gateway.sepa_direct_debit or self.signs_mandates:
            del self.fields["wants_mandate"]
        if not self.signs_mandates:
            for name in ("account_holder", "iban", "mandate_consent", "collects_all"):
                del self.fields[name]
        for invoice in invoices:
            self.fields[self.amount_name(invoice)] = MoneyField(
                label=invoice.number, initial=amount_text(invoice.payable_balance),
                disabled=not gateway.allow_partial,
                help_text=_("Open: %(amount)s") % {"amount": format_money(invoice.payable_balance, invoice.currency)})

    @staticmethod
    def amount_name(invoice) -> str:
        return f"amount_{invoice.pk}"

    def amount_fields(self):
        return [self[self.amount_name(invoice)] for invoice in self.invoices]

    @property
    def signs_mandates(self) -> bool:
        """SEPA direct debit is signed in the portal's own IBAN form (Mollie, embedded, with the
        creditor identifier the mandate text names)."""
        return (self.gateway.provider == "mollie" and self.gateway.sepa_direct_debit and self.gateway.embeds
                and bool(self.gateway.creditor_id))

    def clean(self):
        cleaned = super().clean()
        if self.signs_mandates and cleaned.get("method") == "sepa_direct_debit":
            if not cleaned.get("account_holder", "").strip():
                self.add_error("account_holder", _("Enter the name the account is held in."))
            if not cleaned.get("iban") and "iban" not in self.errors:
                self.add_error("iban", _("Enter the IBAN to collect from."))
            if not cleaned.get("mandate_consent"):
                self.add_error("mandate_consent", _("Please give your consent to sign the mandate."))
        for invoice in self.invoices:
            name = self.amount_name(invoice)
            amount = cleaned.get(name)
            if amount is None:
                continue
            problem = amount_problem(invoice=invoice, gateway=self.gateway, amount=amount)
            if problem:
                self.add_error(name, problem)
        return cleaned

    def requested(self):
        return [(invoice, self.cleaned_data[self.amount_name(invoice)]) for invoice in self.invoices]

    def summary(self) -> dict:
        """What the summary and the Pay button show for the amounts as typed so far: each
        invoice with its amount (None where it is not a valid amount yet), the total of the
        valid ones, the method's label; `complete` when every amount is valid."""
        data = self.data if self.is_bound else {}
        rows, total, complete = [], Decimal("0.00"), True
        for invoice in self.invoices:
            field = self.fields[self.amount_name(invoice)]
            raw = field.initial if field.disabled or not self.is_bound else data.get(self.amount_name(invoice), "")
            try:
                amount = field.clean(raw)
            except forms.ValidationError:
                amount = None
            if amount is not None and amount_problem(invoice=invoice, gateway=self.gateway, amount=amount):
                amount = None
            if amount is None:
                complete = False
            else:
                total += amount
            rows.append({"invoice": invoice, "amount": amount})
        method = data.get("method") if self.is_bound else self.fields["method"].initial
        labels = dict(self.fields["method"].choices)
        return {"rows": rows, "total": total, "complete": complete, "method": labels.get(method, ""),
                "currency": self.invoices[0].currency if self.invoices else ""}
