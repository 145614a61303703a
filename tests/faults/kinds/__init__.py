"""The job kinds the fault harness can exercise: SCENARIOS = {kind: builder}. A builder returns a
KindScenario (tests/faults/drills.py) that writes N jobs of its kind the way the app does and
counts, through the kind's fake remote end, how often the remote acted on each. Every kind in
portal.jobs.HANDLERS has one (tests/faults/test_kinds.py checks that none is missing).

To add a kind: subclass KindScenario in the module of its app's kinds here, with `start_remote()`
giving its fake (tests/fakes, or a stand-in for a kind with no remote end, which offers the same
`fail_next(n, status)` and `delay_next(n, seconds)`), `worker_env()` pointing the workers at it, and
`prepare()` / `write()` / `effects()` / `requests()` / `requests_total()`; override the hooks where
a fault means something else for the kind; then register it below under the kind's name. A kind
that reaches different remote ends by configuration has a scenario for each under "<kind>:<way>"
(the scenario's `kind` is the job kind)."""
from __future__ import annotations

from tests.faults.kinds.accounting import AccountingEventScenario, OutboxDeliverErpRestScenario, OutboxDeliverScenario
from tests.faults.kinds.documents import PdfPrerenderScenario
from tests.faults.kinds.exact import ExactConnectScenario, ExactHintScenario, ExactSyncScenario
from tests.faults.kinds.erp_pull import ErpPullScenario
from tests.faults.kinds.email import NotificationDigestScenario, NotificationEmailScenario, ReminderSendScenario
from tests.faults.kinds.payments import GatewayEventScenario, MandateCollectScenario, MandateSyncScenario
from tests.faults.kinds.peppol import PeppolDeliverScenario, PeppolPollScenario, PeppolStatusScenario
from tests.faults.kinds.remote_call import CountingRemote, RemoteCallScenario
from tests.faults.kinds.twinfield import TwinfieldConnectScenario, TwinfieldPollScenario

SCENARIOS = {
    RemoteCallScenario.kind: RemoteCallScenario,
    AccountingEventScenario.kind: AccountingEventScenario,
    OutboxDeliverScenario.kind: OutboxDeliverScenario,
    f"{OutboxDeliverErpRestScenario.kind}:erp_rest": OutboxDeliverErpRestScenario,
    NotificationEmailScenario.kind: NotificationEmailScenario,
    f"{NotificationDigestScenario.kind}:digest": NotificationDigestScenario,
    ReminderSendScenario.kind: ReminderSendScenario,
    PdfPrerenderScenario.kind: PdfPrerenderScenario,
    GatewayEventScenario.kind: GatewayEventScenario,
    MandateSyncScenario.kind: MandateSyncScenario,
    MandateCollectScenario.kind: MandateCollectScenario,
    ExactSyncScenario.kind: ExactSyncScenario,
    ExactHintScenario.kind: ExactHintScenario,
    ExactConnectScenario.kind: ExactConnectScenario,
    TwinfieldConnectScenario.kind: TwinfieldConnectScenario,
    TwinfieldPollScenario.kind: TwinfieldPollScenario,
    ErpPullScenario.kind: ErpPullScenario,
    PeppolDeliverScenario.kind: PeppolDeliverScenario,
    PeppolStatusScenario.kind: PeppolStatusScenario,
    PeppolPollScenario.kind: PeppolPollScenario,
}

__all__ = ["SCENARIOS", "CountingRemote", "RemoteCallScenario"]
