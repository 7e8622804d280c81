"""pytest plugin (loaded with ``-p csm_scipy_suite_plugin`` by
tests/test_scipy_suite.py, in a subprocess): runs SciPy's installed test module
for logsumexp / softmax / log_softmax against csoftmax.

Nothing of SciPy's test code is copied: before the module is imported, the
names it imports from ``scipy.special`` (and the private ``_wrap_radians`` it
tests) are pointed at csoftmax's functions, and SciPy's array-API test
machinery is replaced by NumPy-only equivalents: the ``xp`` fixture is NumPy,
``devices`` is the CPU, ``make_xp_test_case`` marks nothing.  SciPy's own
assertion helpers (``xp_assert_close`` etc.) are kept.  Every collected test
is checked to see csoftmax's functions, so the run cannot silently test SciPy
against itself.
"""
import numpy as np
import pytest

import scipy._lib._array_api as _array_api
import scipy.special
import scipy.special._logsumexp as _scipy_lse

import csoftmax
from csoftmax import _complex

OURS = {"logsumexp": csoftmax.logsumexp, "softmax": csoftmax.softmax,
        "log_softmax": csoftmax.log_softmax, "_wrap_radians": _complex.wrap_phase}

for _name, _fn in OURS.items():
    if _name.startswith("_"):
        setattr(_scipy_lse, _name, _fn)
    else:
        setattr(scipy.special, _name, _fn)
_array_api.make_xp_test_case = lambda *funcs, **kw: (lambda obj: obj)


@pytest.fixture
def xp():
    return np


@pytest.fixture
def devices():
    return ["cpu"]


def pytest_configure(config):
    for mark in ("xfail_xp_backends", "skip_xp_backends", "array_api_backends",
                 "array_api_compatible"):
        config.addinivalue_line("markers", f"{mark}: SciPy's array-API mark (NumPy only here)")


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        mod = item.module
        for name, fn in OURS.items():
            if hasattr(mod, name) and getattr(mod, name) is not fn:
                raise pytest.UsageError(f"{item.nodeid}: {name} is not csoftmax's")
