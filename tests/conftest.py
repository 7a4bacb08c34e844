"""Test configuration: GPU tests skip cleanly without CuPy or a CUDA device;
hypothesis runs deterministically; shared fixtures.

Hypothesis profiles
-------------------
``"deterministic"`` (loaded unless ``HYPOTHESIS_PROFILE`` names another one)
derandomizes the search: every run, locally and in CI, tries the same
examples, so a red CI run reproduces on any machine and a green one does not
flip by chance; there is no example database to write and no deadline (two
shared cores make timings noisy), and 25 examples per test, which keeps the
property tests within their time budget. ``HYPOTHESIS_PROFILE=explore``
searches with fresh random examples and ten times as many of them, for
hunting new bugs locally; a failure it finds is then pinned with
``@example``.

Fixtures
--------
``xps``
    The ``array_api_strict`` namespace (the test is skipped without it): a
    strict array-API library, standing in for CuPy to run the device code
    paths on a machine without a GPU.
"""

import os

import pytest

try:  # a GPU machine running benchmarks/gpu_check.sh may lack hypothesis
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - the test extra installs it
    settings = None

if settings is not None:
    settings.register_profile(
        "deterministic",
        max_examples=25,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "explore",
        parent=settings.get_profile("deterministic"),
        derandomize=False,
        max_examples=250,
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_collection_modifyitems(config, items):
    from sknetk._device import probe_cupy

    cupy, reason = probe_cupy()
    if cupy is not None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def xps():
    """The ``array_api_strict`` namespace; skips the test where it is missing."""
    return pytest.importorskip("array_api_strict")
