"""Fault tests: a Redis of their own that they stop and start, real Celery workers on it that
they kill, and the sweep played by the test process (tests/faults/harness.py)."""
import pytest

from tests.faults.harness import FaultStack
from tests.faults.kinds import RemoteCallScenario


@pytest.fixture(scope="module")
def fault_stack(process_env, tmp_path_factory):
    """Redis of its own, this process's bell pointed at it, for a module's tests (a worker's start
    costs seconds), with a standby worker that takes a killed one's place at once. The workers get
    the tests' environment: test settings, the fakes' addresses, the transaction guard's log."""
    with FaultStack(tmp_path_factory.mktemp("faults"), base_env=process_env, standby=True) as stack:
        yield stack


@pytest.fixture
def remote_call(fault_stack, committed):
    """The harness's own kind with a counting remote end of its own, and a worker running (the
    module's, or a new one if a test killed it). Ends with Redis running, before `committed`
    purges the queue and wipes the tables."""
    scenario = RemoteCallScenario()
    with scenario.remote() as remote:
        fault_stack.start_workers(scenario.worker_env(remote))
        yield scenario, remote
    if not fault_stack.redis.running:
        fault_stack.redis.start()
