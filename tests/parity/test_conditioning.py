"""The float32 parity checks are well-conditioned, so that they hold on any x86-64 CPU.

Another CPU (AVX2 or AVX-512 kernels, another thread count or BLAS blocking) rounds float32
differently from the one that made a fixture; a check survives that only if float32 rounding moves
its result far less than the tolerance. Here, on whatever machine runs the suite: each float32
check computed in float32 against the same computation in float64 (tools/parity/conditioning.py).
Checks whose computation is not this well-conditioned compare in float64 instead.
"""

import pytest

from tools.parity import conditioning

TOLERANCE = 1e-5  # of the parity checks
ROUNDING_BOUND = TOLERANCE / 5  # float32 rounding may move a float32 check by at most this


@pytest.mark.parametrize("check", conditioning.CHECKS, ids=lambda c: c.__name__)
def test_float32_rounding_stays_far_below_the_tolerance(check):
    errors = check()
    assert errors and all(e <= ROUNDING_BOUND for e in errors.values()), errors


def test_sampled_codes_survive_perturbations_larger_than_rounding():
    assert conditioning.sampled_codes_under_perturbation(runs=2) == 2
