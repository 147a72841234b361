"""The mutation run of ``tests/mutants.py`` in CI: every planted bug in the
Triton kernel (under the interpreter) and in the Python layers is killed by
the tests it names, on a copy of the tree. The C++ mutants need a rebuild
each and run by hand (``python tests/mutants.py --cpp``)."""

from __future__ import annotations

import os

import mutants
import pytest
from conftest import HAS_TRITON

import mixup_fused

# The kernel branches issue 16 asks the Triton mutants to cover, by the tag
# that starts a mutant's description.
KERNEL_BRANCHES = {
    "box edges",
    "NO_BOX",
    "in place",
    "lam == 1",
    "backward",
    "targets",
    "soft targets",
    "smoothing",
    "uint8 normalisation",
    "layout",
}


def _tag(m: mutants.Mutant) -> str:
    return m.what.split(":")[0].split(" (")[0]


def test_every_mutant_applies_and_the_branches_are_covered():
    """Each edit is found exactly once in the current tree (a mutant that no
    longer applies would pass silently), names are unique, every mutant names
    its tests, and the Triton mutants cover every kernel branch."""
    names = [m.name for m in mutants.MUTANTS]
    assert len(set(names)) == len(names)
    for m in mutants.MUTANTS:
        with open(os.path.join(mutants.ROOT, m.path)) as f:
            text = f.read()
        assert text.count(m.old) == 1, f"{m.name}: its edit occurs {text.count(m.old)} times in {m.path}"
        assert m.old != m.new and m.tests, m.name
        assert all(t.startswith("tests/") and "::" in t for t in m.tests), m.name
    kernel = {_tag(m) for m in mutants.MUTANTS if m.path == mutants.KERNEL}
    assert KERNEL_BRANCHES <= kernel, f"kernel branches without a mutant: {sorted(KERNEL_BRANCHES - kernel)}"
    assert any(m.path.startswith("mixup_fused/") and m.path != mutants.KERNEL and not m.cpp for m in mutants.MUTANTS)
    assert 0 < sum(m.cpp for m in mutants.MUTANTS) <= 2


@pytest.mark.slow
@pytest.mark.light_env
@pytest.mark.skipif(not (HAS_TRITON and mixup_fused.HAS_CPP), reason="needs triton and the C++ extension")
def test_every_mutant_is_killed():
    summary = mutants.run([m for m in mutants.MUTANTS if not m.cpp])
    text = mutants.report(summary)
    print(text)
    assert summary["baseline"] == "passed", "the mutants' tests fail (or skip) on the unmutated copy:\n" + text
    survivors = [r["name"] for r in summary["results"] if r["status"] != "killed"]
    assert not survivors, f"mutants not killed by their tests: {survivors}\n{text}"
