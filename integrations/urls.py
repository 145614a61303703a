from django.urls import path

from integrations import views
from integrations.erp.api_views import graphql_api
from integrations.exact.webhooks import exact_webhook
from integrations.peppol.webhooks import peppol_webhook

app_name = "integrations"
urlpatterns = [
    path("webhooks/accounting/<slug:connection>/", views.accounting_webhook, name="accounting_webhook"),
    path("webhooks/exact/<slug:connection>/", exact_webhook, name="exact_webhook"),
    path("webhooks/peppol/<slug:connection>/", peppol_webhook, name="peppol_webhook"),
    path("api/graphql/", graphql_api, name="graphql_api"),
]
