"""Installed in the fault workers only (tests/faults/settings.py): the remote ends' clients wait
FAULTS_CLIENT_TIMEOUT seconds for an answer instead of their production timeouts, so that a drill
that times every attempt out runs in seconds. Only how long they wait changes, not what they do."""
import functools
import os

from django.apps import AppConfig


class FaultsConfig(AppConfig):
    name = "tests.faults"
    label = "faults"

    def ready(self):
        seconds = float(os.environ["FAULTS_CLIENT_TIMEOUT"])
        from mollie.api.client import Client

        from integrations import outbox
        from integrations.exact import client as exact_client, tokens as exact_tokens

        outbox.TIMEOUT = (seconds, seconds)  # the accounting endpoint (connect, read)
        from integrations.erp import client as erp_client, push as erp_push

        erp_push.TIMEOUT = erp_client.TIMEOUT = (seconds, seconds)  # a custom ERP: told of payments, its tokens
        exact_client.TIMEOUT = exact_tokens.TIMEOUT = (seconds, seconds)  # Exact Online's API and token endpoint
        from integrations.twinfield import client as twinfield_client, tokens as twinfield_tokens

        twinfield_client.TIMEOUT = twinfield_tokens.TIMEOUT = (seconds, seconds)  # Twinfield's cluster and login
        from integrations.peppol import services as peppol_services

        peppol_services.TIMEOUT = seconds  # a brand's Peppol access point
        from integrations import oauth

        oauth.LEASE_HOLD = 3 * seconds  # a killed worker's token or Twinfield lease runs out in 3 s, not 10
        made = Client.__init__

        @functools.wraps(made)
        def client_waiting_less(client, *args, **kwargs):  # every Mollie client the gateway makes
            made(client, *args, **kwargs)
            client.set_timeout((seconds, seconds))

        Client.__init__ = client_waiting_less
