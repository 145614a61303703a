"""Pay now, the return page, the client's payments and receipts, gateway webhooks and the
built-in sandbox gateway's checkout."""
import uuid

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from invoices.documents.receipt import receipt_context
from invoices.documents.receipt import receipt_pdf as receipt_pdf_render
from invoices.errors import DomainError
from invoices.models import Payment
from invoices.selectors import client_credit_balances, client_invoices, client_payment_get, client_payments
from payments.forms import CheckoutForm
from payments.gateways import GatewayError
from payments.mandates import collection_opt_in
from payments.mandates import mandate_revoke as mandate_revoke_service
from payments.models import CheckoutAttempt, Mandate, SandboxPayment
from payments.services import AmountRefused, checkout_start, gateway_for_brand
from payments.webhooks import SOURCES
from portal.headers import form_action_to_payment_gateways
from portal.http import download_response
from portal.models import AuditEvent
from portal.permissions import client_required, role_required
from portal.rls import staff_scope
from portal.services import audit_record
from portal.webhooks import webhook_receive


def _selection(request):
    """The invoices a checkout is for, as (those payable now in one currency, links to the same
    selection in each other currency, a message when nothing can be paid). `invoice` ids come
    from the query string or a posted selection (the list's "Pay selected"); `?overdue=1` is
    every overdue invoice ("Pay what is overdue"); `?currency=` picks one of several currencies."""
    invoices = client_invoices(client=request.client)
    if request.GET.get("overdue"):
        chosen = invoices.overdue()
    else:
        ids = {int(pk) for pk in request.GET.getlist("invoice") + request.POST.getlist("invoice") if str(pk).isdigit()}
        chosen = invoices.filter(pk__in=ids)
    payable = list(chosen.payable_now().order_by("due_date", "id"))
    if not payable:
        if chosen.payable().pending().exists():
            return [], [], _("A payment for the chosen invoices is pending. You can pay again if it fails.")
        return [], [], _("Choose at least one invoice with an amount left to pay.")
    currencies = sorted({i.currency for i in payable}, key=lambda c: (c != request.client.default_currency, c))
    currency = request.GET.get("currency") if request.GET.get("currency") in currencies else currencies[0]
    others = []
    for other in currencies:
        if other != currency:
            query = {"overdue": 1} if request.GET.get("overdue") else {
                "invoice": [i.pk for i in payable if i.currency == other]}
            others.append((other, f"{reverse('payments:checkout')}?{urlencode({**query, 'currency': other}, doseq=True)}"))
    return [i for i in payable if i.currency == currency], others, None


@form_action_to_payment_gateways
@client_required
@role_required("pay")
def checkout(request):
    """The checkout: a GET (Pay now, Pay what is overdue) or a POST of invoice ids alone (Pay
    selected) shows it; a POST with the form's key submits it."""
    invoices, others, nothing = _selection(request)
    if nothing:
        messages.info(request, nothing)
        return redirect("invoices:list")
    gateway = gateway_for_brand(request.client.brand)
    if gateway is None:
        return render(request, "invoices/pay.html", {"invoice": invoices[0]})
    submitted = request.method == "POST" and "idempotency_key" in request.POST
    form = CheckoutForm(request.POST if submitted else None, invoices=invoices, gateway=gateway,
                        initial={"idempotency_key": uuid.uuid4()})
    if submitted and form.is_valid():
        try:
            attempt = checkout_start(client=request.client, user=request.user, requested=form.requested(),
                                     method=form.cleaned_data["method"],
                                     idempotency_key=form.cleaned_data["idempotency_key"],
                                     wants_mandate=form.cleaned_data.get("wants_mandate", False))
        except AmountRefused as exc:  # the balance changed since the form was shown
            name = form.amount_name(exc.invoice)
            form.add_error(name if name in form.fields else None, str(exc))
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            if attempt.status in CheckoutAttempt.FINAL or not attempt.checkout_url:
                return redirect("payments:return", attempt.idempotency_key)
            return redirect(attempt.checkout_url)
    return render(request, "payments/checkout.html", {
        "form": form, "invoices": invoices, "gateway": gateway, "summary": form.summary(),
        "other_currencies": others, "currency": invoices[0].currency})


@require_POST
@client_required
@role_required("pay")
def checkout_summary(request):
    """The checkout's summary and Pay button for the amounts as typed (htmx, while typing)."""
    invoices, _others, _nothing = _selection(request)
    gateway = gateway_for_brand(request.client.brand)
    if not invoices or gateway is None:
        return HttpResponse(status=204)
    form = CheckoutForm(request.POST, invoices=invoices, gateway=gateway)
    return render(request, "payments/_summary.html", {"summary": form.summary(), "gateway": gateway})


@client_required
def payment_list(request):
    """Every payment of the client, with its reference and the invoices it settled; the credit."""
    return render(request, "payments/list.html", {
        "payments": client_payments(client=request.client),
        "credits": client_credit_balances(client=request.client)})


def _payment(request, pk: int):
    try:
        return client_payment_get(client=request.client, pk=pk)
    except Payment.DoesNotExist:
        raise Http404("No such payment")


@client_required
def receipt(request, pk: int):
    payment = _payment(request, pk)
    audit_record(action=AuditEvent.Action.RECORD_VIEWED, request=request, obj=payment,
                 details={"number": payment.number})
    return render(request, "payments/receipt.html", {"payment": payment, **receipt_context(payment)})


@client_required
def receipt_pdf(request, pk: int):
    payment = _payment(request, pk)
    pdf, file_name = receipt_pdf_render(payment)
    audit_record(action=AuditEvent.Action.FILE_DOWNLOADED, request=request, obj=payment,
                 details={"format": "pdf", "number": payment.number})
    return download_response(pdf, file_name=file_name, content_type="application/pdf")


def _attempt(request, key) -> CheckoutAttempt:
    attempt = CheckoutAttempt.objects.filter(idempotency_key=key, client=request.client).first()
    if attempt is None:
        raise Http404("No such payment")
    return attempt


@client_required
def checkout_return(request, key):
    attempt = _attempt(request, key)
    template = "payments/_status.html" if request.headers.get("HX-Request") else "payments/return.html"
    return render(request, template, {"attempt": attempt, "items": attempt.items.select_related("invoice")})


@csrf_exempt
@require_POST
def gateway_webhook(request, provider: str, gateway_id: int):
    """Every gateway's webhook, through the one intake: stored, answered at once, left as a job."""
    source = SOURCES.get(provider)
    if source is None:
        return JsonResponse({"status": "rejected", "error": "no gateway of that name"}, status=404)
    return webhook_receive(request, source=source, account_key=str(gateway_id))


def sandbox_checkout(request, payment_id: str):
    """The sandbox gateway's own payment page: you decide what happens to the payment."""
    with staff_scope():
        payment = get_object_or_404(SandboxPayment, provider_payment_id=payment_id)
        attempt = CheckoutAttempt.objects.select_related("gateway").get(provider_payment_id=payment_id,
                                                                         gateway__provider="sandbox")
    if request.method == "POST" and request.POST.get("outcome") in ("paid", "failed", "canceled", "pending"):
        if payment.status in ("open", "pending"):
            with staff_scope():
                SandboxPayment.objects.filter(pk=payment.pk).update(status=request.POST["outcome"])
            # The gateway tells us, as Mollie does: a webhook that only names the payment.
            _sandbox_calls_webhook(request, attempt.gateway, payment_id)
        return redirect(payment.redirect_url)
    return render(request, "payments/sandbox_checkout.html", {"payment": payment})


def _sandbox_calls_webhook(request, gateway, payment_id: str) -> None:
    """The sandbox's webhook call, made in this process rather than over HTTP (it is our own
    server): the same request the intake would get from a gateway."""
    hook = HttpRequest()
    hook.method = "POST"
    hook.META = {"CONTENT_TYPE": "application/x-www-form-urlencoded", "HTTP_USER_AGENT": "Sandbox gateway",
                 "REMOTE_ADDR": request.META.get("REMOTE_ADDR", "127.0.0.1")}
    hook._body = f"id={payment_id}".encode()
    webhook_receive(hook, source=SOURCES["sandbox"], account_key=str(gateway.pk))


@client_required
def mandates(request):
    return render(request, "payments/mandates.html", {
        "mandates": Mandate.objects.filter(client=request.client).order_by("-created_at")})


@require_POST
@client_required
@role_required("pay")
def mandate_revoke(request, pk: int):
    mandate = get_object_or_404(Mandate.objects.select_related("gateway", "client"), pk=pk, client=request.client,
                                status=Mandate.Status.VALID)
    try:
        mandate_revoke_service(mandate=mandate, user=request.user, request=request)
    except GatewayError:
        messages.error(request, _("The mandate could not be revoked: Mollie could not be reached. "
                                  "Nothing has changed; please try again in a moment."))
    else:
        messages.success(request, _("The mandate is revoked. Nothing more will be collected with it."))
    return redirect("payments:mandates")


@require_POST
@client_required
@role_required("pay")
def collect_on_due_date(request, pk: int):
    invoice = get_object_or_404(client_invoices(client=request.client), pk=pk)
    try:
        collection_opt_in(invoice=invoice, user=request.user, request=request)
        messages.success(request, _("This invoice will be collected by direct debit on its due date."))
    except DomainError as exc:
        messages.error(request, str(exc))
    return redirect("invoices:detail", invoice.pk)
