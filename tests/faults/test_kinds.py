"""The three faults on every real job kind (tests/faults/kinds/), with a real worker on a real
Redis: Redis stopped while the jobs arrive; the worker killed with SIGKILL in the middle of one;
the remote end failing every attempt (for a database-only kind, the handler failing), then a
replay from admin. Each job ends done, and acted on once: the one exception, counted as such, is
an email whose worker was killed after the mail server took it and before it answered.

One worker for the module, started once with what every kind needs (tests/faults/settings.py:
mail by SMTP to one mail server, one fake Mollie, short client timeouts), so the kinds share it."""
import pytest

from portal.jobs import handler_for
from tests.faults import drills
from tests.faults.kinds import SCENARIOS
from tests.faults.kinds.common import worker_env
from tests.faults.kinds.documents import PdfPrerenderScenario, Renders
from tests.faults.kinds.email import EmailScenario
from tests.faults.kinds.erp_pull import ErpPullScenario
from tests.faults.kinds.exact import ExactConnectScenario, ExactSyncScenario
from tests.faults.kinds.twinfield import TwinfieldConnectScenario, TwinfieldPollScenario
from tests.faults.kinds.payments import Mollie, MollieScenario
from tests.faults.smtp import FakeSmtp
from tests.support.tasks import REMOTE_CALL

KINDS = sorted(kind for kind in SCENARIOS if kind != REMOTE_CALL)
JOBS = 3
FAILING_JOBS = 2  # every attempt of every job times out or fails in turn: fewer, to keep it short


@pytest.fixture(scope="module")
def shared_remotes(exact_server, twinfield_server, erp_server):
    """The remote ends whose address the worker is started with, shared by the module's tests
    (the session's local Exact and Twinfield, whose addresses every worker the tests start has, and
    the local ERP, whose address is on each pull connection's row)."""
    with FakeSmtp() as smtp, Mollie() as mollie, Renders() as renders:
        yield {EmailScenario: smtp, MollieScenario: mollie, PdfPrerenderScenario: renders,
               ExactSyncScenario: exact_server, ExactConnectScenario: exact_server,
               TwinfieldConnectScenario: twinfield_server, TwinfieldPollScenario: twinfield_server,
               ErpPullScenario: erp_server}


@pytest.fixture
def drill(request, fault_stack, shared_remotes, committed):
    """The kind's scenario (request.param) on the module's worker, started if a test killed it.
    Ends with its faults dropped and Redis running, before `committed` wipes the tables."""
    scenario_class = SCENARIOS[request.param]
    shared = next((remote for base, remote in shared_remotes.items() if issubclass(scenario_class, base)), None)
    if hasattr(shared, "reset"):
        shared.reset()  # the database starts empty, its ids from 1 again: so does what the remote knows
    scenario = scenario_class(shared)
    fault_stack.start_workers(worker_env(EMAIL_URL=shared_remotes[EmailScenario].url,
                                         MOLLIE_API_ENDPOINT=shared_remotes[MollieScenario].url,
                                         FAULTS_MEDIA_DIR=str(shared_remotes[PdfPrerenderScenario].directory)))
    with scenario.remote() as remote:
        try:
            yield scenario, remote
        finally:
            if not fault_stack.redis.running:
                fault_stack.redis.start()
            scenario.heal(remote)


def _tally(outcome):
    return outcome.done_once, outcome.lost, outcome.duplicated


def test_every_job_kind_has_a_fault_scenario():
    from django.utils.module_loading import autodiscover_modules

    from portal.jobs import HANDLERS

    autodiscover_modules("tasks")
    real = {kind for kind in HANDLERS if not kind.startswith("test.")}
    assert real <= set(SCENARIOS), f"kinds without a scenario in tests/faults/kinds/: {sorted(real - set(SCENARIOS))}"


@pytest.mark.parametrize("drill", KINDS, indirect=True)
def test_jobs_arriving_while_redis_is_down_are_kept_then_done_once_when_it_returns(fault_stack, drill):
    scenario, remote = drill
    outcome = drills.redis_stopped(fault_stack, scenario, remote, JOBS)
    assert outcome.notes["bells_failed"] >= 1  # quietly: what arrived was stored and committed all the same
    assert outcome.notes["pending_while_down"] == JOBS  # and nothing ran until Redis was back and the sweep rang
    assert _tally(outcome) == (JOBS, 0, 0), outcome


@pytest.mark.parametrize("drill", KINDS, indirect=True)
def test_a_job_whose_worker_is_killed_mid_job_finishes_after_its_lease_runs_out(fault_stack, drill):
    scenario, remote = drill
    outcome = drills.worker_killed(fault_stack, scenario, remote, JOBS)
    assert outcome.notes["orphans"] == 1 and outcome.notes["orphan_attempts"] == [2]  # taken over once
    if scenario.kill_may_duplicate:
        # The mail server had taken the orphan's message when its worker died: the retry sends
        # it again (the one duplicate email cannot avoid); every other email went once.
        assert outcome.notes["known_duplicates"] == 1
        assert _tally(outcome) == (JOBS - 1, 0, 1), outcome
        assert outcome.ok
    else:
        assert _tally(outcome) == (JOBS, 0, 0), outcome


@pytest.mark.parametrize("drill", [kind for kind in KINDS if SCENARIOS[kind]().applies("remote 500 / timeout")],
                         indirect=True)
def test_a_job_failing_every_attempt_is_dead_with_its_reason_then_a_replay_from_admin_does_it_once(
        fault_stack, drill):
    scenario, remote = drill
    outcome = drills.remote_failing(fault_stack, scenario, remote, FAILING_JOBS)
    assert list(outcome.notes["errors"]) == list(range(1, handler_for(scenario.kind).max_attempts + 1))
    # Dead with the reason of the last attempt: the remote's timeout, or what failing is for the kind.
    assert outcome.notes["dead_reasons"]
    assert all(scenario.dead_reason in line for line in outcome.notes["dead_reasons"]), outcome.notes["dead_reasons"]
    assert outcome.notes["replays_audited"] == FAILING_JOBS
    assert _tally(outcome) == (FAILING_JOBS, 0, 0), outcome
    assert not outcome.remark or "not marked sent" not in outcome.remark, outcome.remark
