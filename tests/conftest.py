"""Test setup. Every test runs with FASTRNN_DEBUG_POISON=1: fastrnn fills each output and scratch
buffer it allocates with NaN first, so an element a kernel fails to write shows up as a NaN and
fails the comparison it lands in."""

import os
import zlib

os.environ.setdefault("FASTRNN_DEBUG_POISON", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_global_rng(request):
    """Seeds torch's global RNG from the test's id, so code that draws from it (torch's own
    make_tensor, dropout) is reproducible per test and still differs between tests."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()) ^ 0x5EED)


@pytest.fixture(autouse=True)
def _restore_threads():
    """Tests that call torch.set_num_threads leave the next test torch's thread count as they
    found it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def generator(request) -> torch.Generator:
    """A generator seeded from the test's id: fresh data for every test, reproducible."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def pytest_configure(config):
    import fastrnn

    assert fastrnn._C is not None


# Hypothesis: CI replays the same examples every run (reproducible); locally it explores. No
# timing checks in either (no deadline, no too-slow health check): a busy machine is not a failure.
try:
    from hypothesis import HealthCheck, settings

    untimed = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", derandomize=True, print_blob=True, **untimed)
    settings.register_profile("local", **untimed)
    settings.load_profile("ci" if os.environ.get("CI") else "local")
except ImportError:  # hypothesis is installed by the README's test command
    pass
