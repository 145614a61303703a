from django.urls import path

from integrations import views
from integrations.exact.webhooks import exact_webhook

app_name = "integrations"
urlpatterns = [
    path("webhooks/accounting/<slug:connection>/", views.accounting_webhook, name="accounting_webhook"),
    path("webhooks/exact/<slug:connection>/", exact_webhook, name="exact_webhook"),
]
