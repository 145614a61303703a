"""The security suite's shared plumbing: one committed data set per module, and bells that are
recorded instead of rung.

The matrix and the fuzz send thousands of requests over one data set; building it per test would
cost minutes. So a module builds its rows once, committed for real (as tests/conftest.py's
`committed` does for one test), the requests commit what they write as in production, and the
whole database is emptied when the module ends."""
import pytest

from portal import jobs


@pytest.fixture(scope="module")
def bells():
    """Job bells of this module, recorded: no test here needs a worker, and none may reach Redis's
    queues of a worker that another test started. The job rows (the truth) are still written."""
    rung: list[tuple] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jobs.current_app, "send_task",
                      lambda name, args=None, kwargs=None, **options: rung.append((name, args, kwargs)))
        yield rung


@pytest.fixture(scope="module")
def module_committed(bells, module_committed):
    """tests/conftest.py's `module_committed`, with this module's bells recorded from the start."""
    return module_committed


@pytest.fixture
def open_db(module_committed, django_db_blocker):
    """Database access for one test of a module that shares committed rows: no test transaction,
    so what a request writes commits as it would in production (and the module's wipe clears it)."""
    with django_db_blocker.unblock():
        yield
