"""Test configuration: GPU tests skip cleanly without CuPy or a CUDA device."""

import pytest


def pytest_collection_modifyitems(config, items):
    from sknetk._device import _probe_cupy

    cupy, reason = _probe_cupy()
    if cupy is not None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
