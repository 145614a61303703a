"""bench/faults.py runs by hand at 200 jobs per kind and fault; here at 3, with one worker, so
that `make test` keeps it working."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent.parent / "bench" / "faults.py"


def test_the_fault_benchmark_runs_every_fault_at_a_tiny_size_and_prints_its_table(committed, process_env, capsys):
    spec = importlib.util.spec_from_file_location("bench_faults", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    assert bench.main(["--jobs", "3", "--workers", "1", "--kind", "test.remote_call"], base_env=process_env) == 0
    printed = capsys.readouterr().out
    assert "| kind | fault | jobs | done once | lost | duplicated | time |" in printed
    for fault in ("redis stopped", "worker killed", "remote 500 / timeout"):
        assert f"| test.remote_call | {fault} | 3 | 3 | 0 | 0 |" in printed
