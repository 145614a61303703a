"""The three faults on the harness's own kind (tests/support/tasks.py), with a real worker on a
real Redis: Redis stopped while jobs arrive, the worker killed mid-job, the remote end failing
every attempt. Each ends with every job done, and acted on once by the remote end."""
from tests.faults import drills


def _tally(outcome):
    return outcome.done_once, outcome.lost, outcome.duplicated


def test_jobs_written_while_redis_is_down_stay_pending_then_are_done_once_when_it_returns(fault_stack, remote_call):
    scenario, remote = remote_call
    outcome = drills.redis_stopped(fault_stack, scenario, remote, 3)
    assert outcome.notes["bells_failed"] == 3  # quietly: each job's transaction committed all the same
    assert outcome.notes["pending_while_down"] == 3  # and nothing ran until Redis was back and the sweep rang
    assert _tally(outcome) == (3, 0, 0)
    assert sorted(remote.heard.values()) == [1, 1, 1]


def test_a_job_whose_worker_is_killed_mid_call_finishes_once_after_its_lease_runs_out(fault_stack, remote_call):
    scenario, remote = remote_call
    outcome = drills.worker_killed(fault_stack, scenario, remote, 3)
    assert _tally(outcome) == (3, 0, 0)
    assert outcome.notes["orphans"] == 1
    assert outcome.notes["orphan_attempts"] == [2]  # taken over once, by the new worker
    assert outcome.notes["orphan_requests"] == [2]  # the remote heard its key twice and acted once
    assert sorted(remote.acted.values()) == [1, 1, 1]


def test_a_remote_failing_every_attempt_leaves_the_job_dead_then_a_replay_from_admin_does_it_once(
        fault_stack, remote_call):
    scenario, remote = remote_call
    outcome = drills.remote_failing(fault_stack, scenario, remote, 3)
    assert _tally(outcome) == (3, 0, 0)
    errors = outcome.notes["errors"]
    assert list(errors) == [1, 2, 3]  # three attempts allowed, each one failed
    assert all("500 Server Error" in error for error in errors[1])
    assert all("ReadTimeout" in error for error in errors[2] + errors[3])
    assert outcome.notes["replays_audited"] == 3
    # 500, timeout (acted, answered too late), timeout (its key: no second act), replay (likewise)
    assert sorted(remote.heard.values()) == [4, 4, 4] and sorted(remote.acted.values()) == [1, 1, 1]
