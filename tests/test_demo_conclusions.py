"""The demo's conclusions that the README states hold on this machine (the full demo, seed 0): the
digits in the README are a mean over three seeds (benchmarks/demo_seeds.py); the conclusions, not the
digits, are what every run must reproduce. The 3-bit signed-vs-unsigned comparison held for 1 of 3
seeds there, so the README does not claim it and it is not checked."""
import pytest

from snnconvert.demo import run_demo

pytestmark = pytest.mark.slow

ROBUST = [
    "the calibrated preset comes within 1% of the ANN in the fewest steps",
    "V(0)=theta/2 brings RMP within 1% of the ANN in fewer steps",
    "V(0)=theta/2 brings SNM within 1% of the ANN in fewer steps",
    "soft reset (RMP, alpha=1) comes within 1% of the ANN in fewer steps than hard reset",
    "Fast-SNN 2-bit: signed IF at least as accurate as unsigned IF at T=3",
]


def test_the_full_demo_reproduces_the_readme_conclusions(tmp_path):
    results = run_demo(tmp_path / "demo", seed=0, echo=lambda s: None)
    holds = {c["claim"]: c["holds"] for c in results["conclusions"]}
    for claim in ROBUST:
        assert holds[claim], (claim, [c for c in results["conclusions"] if c["claim"] == claim])
    assert results["ann_accuracy"] > 0.97
