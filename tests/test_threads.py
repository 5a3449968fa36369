"""The step loops' threads (csrc/cpu/stage_team.h, team_pool.cpp): every chunk of every stage runs
exactly once and never before the previous stage has finished, with threads that lose their
core part-way; and the layers give torch.nn's results on each thread backend
(FASTRNN_CPU_THREADS: openmp, the default; pool, fastrnn's own threads), with and without a busy
process on a core."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import fastrnn

from utils import FASTRNN_PARENT

pytestmark = pytest.mark.kernels


@pytest.mark.parametrize("threads, stages, chunks", [(1, 5, 3), (2, 50, 2), (2, 200, 8),
                                                      (4, 30, 16), (3, 7, 5)])
def test_every_chunk_runs_once_in_stage_order(threads, stages, chunks):
    early, wrong = fastrnn._C.cpu_stage_team_check(threads, stages, chunks, 0, 0)
    assert (early, wrong) == (0, 0)


@pytest.mark.parametrize("threads", [2, 4])
def test_slow_threads_are_taken_over(threads):
    """Some chunks take 300 us (longer than the schedule's patience of 200 us with chunks this
    short): the waiting threads see the stall, one of them runs the rest alone, and every chunk
    still runs once, in stage order."""
    early, wrong = fastrnn._C.cpu_stage_team_check(threads, 40, 4 * threads, 3, 300)
    assert (early, wrong) == (0, 0)


def test_empty_schedule():
    assert fastrnn._C.cpu_stage_team_check(2, 0, 2, 0, 0) == (0, 0)


def test_bad_sizes_are_an_error():
    with pytest.raises(RuntimeError, match="bad sizes"):
        fastrnn._C.cpu_stage_team_check(2, 3, 1, 0, 0)


CHECK = textwrap.dedent('''
    import os, sys, threading, time
    import torch, fastrnn
    sys.path.insert(0, {tests!r})
    from benchmarks.measure import BusyCore
    assert fastrnn._C.cpu_threads_backend() == {backend!r}
    assert fastrnn._C.cpu_stage_team_check(2, 100, 8, 5, 300) == (0, 0)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    busy = BusyCore() if {busy} else None
    try:
        for name in ("LSTM", "GRU", "RNN"):
            ref = getattr(torch.nn, name)(48, 96, num_layers=2, dtype=torch.float64)
            fast = getattr(fastrnn, name)(48, 96, num_layers=2, dtype=torch.float64)
            fast.load_state_dict(ref.state_dict())
            x = torch.randn(30, 40, 48, dtype=torch.float64, requires_grad=True)
            results = []
            for module in (ref, fast):
                out = module(x)[0]
                (grad,) = torch.autograd.grad(out.square().sum(), x)
                results.append((out.detach(), grad))
            for a, b in zip(*results):
                assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), name
            # two Python threads at once: one uses the threads, the other runs alone
            outputs = {{}}
            def call(i):
                with torch.no_grad():
                    outputs[i] = fast(x.detach())[0]
            workers = [threading.Thread(target=call, args=(i,)) for i in range(2)]
            for w in workers: w.start()
            for w in workers: w.join()
            for i in range(2):
                assert torch.allclose(outputs[i], results[1][0], rtol=1e-10, atol=1e-10), name
        if {backend!r} == "pool" and hasattr(os, "fork"):
            # A forked child has none of the parent's helper threads: it starts a new pool.
            # (Only the schedule runs there: a layer call with two threads would reach GNU
            # OpenMP, through MKL, which hangs in a child forked after a parallel region ran.)
            pid = os.fork()
            if pid == 0:
                os._exit(0 if fastrnn._C.cpu_stage_team_check(2, 50, 8, 0, 0) == (0, 0) else 1)
            assert os.waitpid(pid, 0)[1] == 0
    finally:
        if busy is not None:
            busy.stop()
    print("ok")
''')


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy-core"])
@pytest.mark.parametrize("backend", ["openmp", "pool"])
def test_layers_match_torch_on_each_thread_backend(backend, busy, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, FASTRNN_CPU_THREADS=backend,
               PYTHONPATH=os.pathsep.join([FASTRNN_PARENT, root, os.environ.get("PYTHONPATH", "")]))
    code = CHECK.format(tests=root, backend=backend, busy=busy)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok")
