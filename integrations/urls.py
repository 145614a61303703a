from django.urls import path

from integrations import views

app_name = "integrations"
urlpatterns = [
    path("webhooks/accounting/<slug:connection>/", views.accounting_webhook, name="accounting_webhook"),
]
