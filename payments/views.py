"""Pay now, the return page, the client's payments and receipts, gateway webhooks and the
built-in sandbox gateway's checkout."""
import uuid

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.conf import settings
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from invoices.documents.receipt import receipt_context
from invoices.documents.receipt import receipt_pdf as receipt_pdf_render
from invoices.errors import DomainError
from invoices.models import Payment
from invoices.selectors import client_credit_balances, client_invoices, client_payment_get, client_payments
from payments.forms import CheckoutForm
from payments.gateways import GatewayError, GatewayRefused, MandatesNotAllowed, adapter_for
from payments.gateways.mollie import LOCALES as MOLLIE_LOCALES
from payments.mandates import collection_opt_in, mandate_sign
from payments.mandates import mandate_revoke as mandate_revoke_service
from payments.models import CheckoutAttempt, GatewayAccount, Mandate, SandboxPayment
from payments.services import (AmountRefused, checkout_abandon, checkout_client_secret, checkout_start,
                               gateway_for_brand)
from payments.webhooks import SOURCES
from portal.headers import form_action_to_payment_gateways
from portal.http import download_response
from portal.middleware import file_response, outside_request_transaction
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
    selected) shows it; a POST with the form's key submits it. The page's script posts it with
    `Accept: application/json` to open Stripe's embedded checkout (it answers the client secret);
    without the script the same form pays on the gateway's page."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    invoices, others, nothing = _selection(request)
    if nothing:
        if wants_json:
            return _json({"error": nothing}, status=409)
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
            attempt = _pay(request, form)
        except (AmountRefused, DomainError) as exc:
            if wants_json:
                return _json({"error": str(exc)}, status=409)
            name = form.amount_name(exc.invoice) if isinstance(exc, AmountRefused) else None
            form = _form_again(request, form, invoices=invoices, gateway=gateway)  # a new key: another try
            form.add_error(name if name in form.fields else None, str(exc))
        else:
            if wants_json:
                secret = checkout_client_secret(attempt)
                if secret:
                    return _json({"client_secret": secret,
                                  "abandon_url": reverse("payments:abandon", args=[attempt.idempotency_key])})
                return _json({"redirect": _next_url(attempt)})
            if attempt.status == CheckoutAttempt.Status.FAILED and form.cleaned_data.get("card_token"):
                form = _form_again(request, form, invoices=invoices, gateway=gateway)
                form.add_error(None, attempt.failure_text)  # declined at once: say so here, try again here
            else:
                return redirect(_next_url(attempt))
    elif wants_json and submitted:
        return _json({"error": _("Please check the form.")}, status=422)
    response = render(request, "payments/checkout.html", {
        "form": form, "invoices": invoices, "gateway": gateway, "summary": form.summary(),
        "other_currencies": others, "currency": invoices[0].currency, "embed": _embed(request, gateway)})
    if gateway.embeds:
        response.embeds_gateway = gateway.provider
    return response


def _json(data: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    add_never_cache_headers(response)  # a client secret is for this page, once
    return response


def _embed(request, gateway) -> dict | None:
    """What the page's script needs to draw the gateway's own form in it (None: the hosted page)."""
    if not gateway.embeds:
        return None
    if gateway.provider == GatewayAccount.Provider.STRIPE:
        return {"provider": "stripe", "script": settings.STRIPE_JS_URL, "key": gateway.publishable_key,
                "locale": translation.get_language()}
    return {"provider": "mollie", "script": settings.MOLLIE_JS_URL, "key": gateway.profile_id,
            "locale": MOLLIE_LOCALES.get(translation.get_language(), "en_US"),
            "testmode": gateway.mode == GatewayAccount.Mode.TEST}


def _form_again(request, form, *, invoices, gateway) -> CheckoutForm:
    """The same amounts and choices with a new key, for another try after a refusal."""
    data = request.POST.copy()
    data["idempotency_key"] = str(uuid.uuid4())
    data["card_token"] = ""
    data["embedded"] = ""
    again = CheckoutForm(data, invoices=invoices, gateway=gateway)
    again.is_valid()
    return again


def _pay(request, form) -> CheckoutAttempt:
    """Start the payment the form asks for: a card token (Mollie Components), an embedded
    Stripe session, a SEPA mandate signed here and collected on, or the gateway's own page."""
    data, gateway = form.cleaned_data, form.gateway
    start = dict(client=request.client, user=request.user, requested=form.requested(),
                 idempotency_key=data["idempotency_key"])
    if form.signs_mandates and data["method"] == "sepa_direct_debit":
        try:
            mandate = mandate_sign(client=request.client, user=request.user, gateway=gateway,
                                   holder=data["account_holder"].strip(), iban=data["iban"],
                                   collects_all=data.get("collects_all", False), key=data["idempotency_key"],
                                   request=request)
        except MandatesNotAllowed:
            # Mollie makes this merchant's mandates only from a first payment: the account the
            # client pays it from (by iDEAL, or card) is the one collected from afterwards.
            first = next((m for m in ("ideal", "card") if m in gateway.methods()), None)
            if first is None:
                raise DomainError(_("Direct debit cannot be set up here. Please choose another way to pay."))
            messages.info(request, _("Your bank confirms the mandate with this first payment: the account you pay "
                                     "it from is the one we collect from afterwards."))
            return checkout_start(**start, method=first, wants_mandate=True)
        except GatewayRefused as exc:
            if exc.field == "consumerAccount":
                raise DomainError(_("The bank did not accept this IBAN. Please check it.")) from exc
            raise DomainError(_("The mandate could not be set up. Please check the details or choose another way "
                                "to pay.")) from exc
        except GatewayError as exc:
            raise DomainError(_("The payment provider could not be reached. Please try again in a moment.")) \
                from exc
        return checkout_start(**start, method="sepa_direct_debit", mandate=mandate)
    embedded = bool(data.get("embedded")) and gateway.provider == GatewayAccount.Provider.STRIPE
    card_token = data.get("card_token", "") if (gateway.provider == GatewayAccount.Provider.MOLLIE
                                                and data["method"] == "card") else ""
    return checkout_start(**start, method=data["method"], wants_mandate=data.get("wants_mandate", False),
                          embedded=embedded or bool(card_token), card_token=card_token)


def _next_url(attempt: CheckoutAttempt) -> str:
    """Where the client goes once the attempt is started: the gateway's page (hosted checkout,
    the bank for iDEAL, the issuer's 3-D Secure step), else the portal's status page."""
    if attempt.status in CheckoutAttempt.FINAL or not attempt.checkout_url:
        return reverse("payments:return", args=[attempt.idempotency_key])
    return attempt.checkout_url


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


@file_response
@outside_request_transaction
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
    """The portal's status page, where every payment ends (the gateway's return, 3-D Secure, the
    bank). It shows what the gateway's webhook has told us. Coming back from Stripe with the
    session id while the attempt is still open, the page asks (a POST: no call to Stripe from a
    GET, which runs in the request's read transaction) whether the session was left unfinished."""
    attempt = _attempt(request, key)
    session_id = request.GET.get("session_id", "")
    check = (session_id and session_id == attempt.provider_payment_id and attempt.status == CheckoutAttempt.Status.OPEN
             and attempt.gateway.provider == GatewayAccount.Provider.STRIPE)
    template = "payments/_status.html" if request.headers.get("HX-Request") else "payments/return.html"
    return render(request, template, {"attempt": attempt, "items": attempt.items.select_related("invoice"),
                                      "check_session": check})


@require_POST
@client_required
def checkout_return_check(request, key):
    """Stripe, asked with no transaction open: is the session the client came back from still
    open (an iDEAL payment not finished, say)? Then the page says so and offers to try again.
    Whether it is paid is the signed webhook's to say, never this answer's."""
    attempt = _attempt(request, key)
    unfinished = False
    if (attempt.status == CheckoutAttempt.Status.OPEN and attempt.provider_payment_id
            and attempt.gateway.provider == GatewayAccount.Provider.STRIPE):
        try:
            unfinished = adapter_for(attempt.gateway).session_state(attempt.provider_payment_id) == "open"
        except GatewayError:
            unfinished = False  # then the page waits for the webhook, as it does anyway
    return render(request, "payments/_status.html", {"attempt": attempt, "unfinished": unfinished,
                                                      "items": attempt.items.select_related("invoice")})


@require_POST
@client_required
@role_required("pay")
def checkout_abandon_view(request, key):
    """The client goes back from Stripe's embedded form to change the amounts or the method:
    that session is expired at Stripe, so it cannot be paid any more."""
    checkout_abandon(_attempt(request, key))
    return HttpResponse(status=204)


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
