from django.urls import path

from payments import views

app_name = "payments"
urlpatterns = [
    path("pay/", views.checkout, name="checkout"),
    path("pay/summary/", views.checkout_summary, name="summary"),
    path("pay/<uuid:key>/", views.checkout_return, name="return"),
    path("pay/<uuid:key>/abandon/", views.checkout_abandon_view, name="abandon"),
    path("pay/<uuid:key>/check/", views.checkout_return_check, name="return_check"),
    path("payments/", views.payment_list, name="list"),
    path("payments/<int:pk>/", views.receipt, name="receipt"),
    path("payments/<int:pk>/receipt.pdf", views.receipt_pdf, name="receipt_pdf"),
    path("webhooks/payments/<slug:provider>/<int:gateway_id>/", views.gateway_webhook, name="webhook"),
    path("sandbox-gateway/<str:payment_id>/", views.sandbox_checkout, name="sandbox_checkout"),
    path("direct-debit/", views.mandates, name="mandates"),
    path("direct-debit/<int:pk>/revoke/", views.mandate_revoke, name="mandate_revoke"),
    path("invoices/<int:pk>/collect/", views.collect_on_due_date, name="collect_on_due_date"),
]
