"""Run the parity tests and print each relative error they check against the reference fixtures.

    python -m tools.parity.report

The tests assert each error is within tolerance; this shows the values themselves (for the README's
parity table). Exit status is pytest's.
"""

import inspect
import sys

import pytest

from tools.parity import fixture

_relative_error = fixture.relative_error


def _reporting_relative_error(actual, expected):
    error = float(_relative_error(actual, expected))
    caller = inspect.stack()[1]
    print(f"\n{caller.filename.rsplit('/', 1)[-1]}::{caller.function} line {caller.lineno}: relative error {error:.2e}")
    return error


if __name__ == "__main__":
    fixture.relative_error = _reporting_relative_error  # before pytest imports the test modules
    # test_conditioning measures our float32 against our float64, not against the reference:
    # python -m tools.parity.conditioning prints those figures
    sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", "tests/parity",
                          "--deselect", "tests/parity/test_conditioning.py"]))
