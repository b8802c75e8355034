"""fit_exit_rule: the fitted margin rule keeps its promise on the fitting data and behaves live as fitted."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnconvert as sc
from snnconvert.simulation.early_exit import replay, running_margin
from snnconvert.simulation.exit_fit import fit_thresholds, unchanged_steps


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 4)).eval()


def recorded(T: int, N: int, C: int, seed: int) -> torch.Tensor:
    """Per-step outputs [T, N, C] that settle over time, as a converted network's do."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(N, C, generator=g) * 2
    noise = torch.randn(T, N, C, generator=g) * 3
    return target[None] + noise


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.integers(1, 60), st.integers(2, 5), st.floats(0.0, 0.3),
       st.integers(1, 3), st.integers(0, 10_000))
def test_greedy_thresholds_keep_the_disagreement_within_tolerance(T, N, C, tol, stable, seed):
    outs = recorded(T, N, C, seed)
    cs = outs.cumsum(0)
    pred = cs.argmax(-1)
    margins = torch.stack([running_margin(cs[t], t + 1) for t in range(T)])
    thresholds, exit_step, exit_pred = fit_thresholds(margins, pred, tol, stable)
    assert len(thresholds) == T and ((exit_step >= 1) & (exit_step <= T)).all()
    assert torch.equal(exit_pred, pred[exit_step - 1, torch.arange(N)])  # the answer at the exit step
    assert (exit_pred != pred[-1]).double().mean() <= tol + 1e-12
    # no sample exits before its prediction has been stable for `stable` steps (or at T)
    unchanged = unchanged_steps(pred)[exit_step - 1, torch.arange(N)]
    assert ((unchanged >= stable) | (exit_step == T)).all()
    # the rule, applied as simulate() applies it, does what the fit says
    rule = sc.ExitOnMargin(tuple(thresholds), stable_steps=stable)
    steps, preds = replay(rule, outs)
    assert torch.equal(steps, exit_step) and torch.equal(preds, exit_pred)


def test_thresholds_by_hand():
    # 4 samples, 2 steps; reference = prediction at step 2 = [0, 0, 1, 1]
    pred = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])
    margins = torch.tensor([[3.0, 2.0, 1.0, 0.5], [1.0, 1.0, 1.0, 1.0]])
    # with no disagreement allowed, only sample 0 (the largest margin) may stop at step 1: its margin
    # passes the threshold, the next one's (a sample that would answer wrongly) does not
    thresholds, exit_step, exit_pred = fit_thresholds(margins, pred, tolerance=0.0)
    assert exit_step.tolist() == [1, 2, 2, 2] and exit_pred.tolist() == [0, 0, 1, 1]
    assert 2.0 < thresholds[0] <= 3.0
    # a tolerance of 1/2 lets all four stop at step 1 (2 of the 4 answers then differ from step 2's)
    thresholds, exit_step, _ = fit_thresholds(margins, pred, tolerance=0.5)
    assert exit_step.tolist() == [1, 1, 1, 1] and thresholds[0] <= 0.5
    # thresholds have the fitted form c / t + d
    c, d = (thresholds[0] - thresholds[1]) * 2, 2 * thresholds[1] - thresholds[0]
    assert c >= 0 and d >= 0


def test_the_fitted_rule_runs_live_as_fitted_and_saves_steps():
    model = small_cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    snn = sc.convert(model, x, "snm")
    fit = sc.fit_exit_rule(snn, (x, y), 24, tolerance=0.02, stable_steps=(1, 3))
    assert fit.disagreement <= 0.02 and fit.mean_steps < 24
    assert fit.rule.stable_steps in (1, 3) and fit.rule.to_dict()["fitted"]["tolerance"] == 0.02
    live = sc.simulate(snn, (x, y), 24, exit_when=fit.rule, chunk_size=5)
    assert live.exit_steps_histogram == torch.bincount(fit.exit_step, minlength=25)[1:].tolist()
    assert live.accuracy[-1] == pytest.approx(fit.exit_accuracy())
    assert live.exit_rule["rule"] == "ExitOnMargin" and live.mean_steps == pytest.approx(fit.mean_steps)
    fixed = sc.simulate(snn, (x, y), 24)
    assert fit.fixed_accuracy() == pytest.approx(fixed.accuracy)
    windowed = sc.fit_exit_rule(snn, (x, y), 24, tolerance=0.05, stable_steps=(1,), windows=(4,))
    assert windowed.rule.window == 4 and windowed.disagreement <= 0.05
    live_w = sc.simulate(snn, (x, y), 24, exit_when=windowed.rule, chunk_size=3)
    assert live_w.exit_steps_histogram == torch.bincount(windowed.exit_step, minlength=25)[1:].tolist()
    assert live.synops_per_sample() < fixed.synops_per_sample()


def test_bad_arguments_are_named():
    model = small_cnn()
    x = torch.randn(8, 1, 8, 8)
    snn = sc.convert(model, x, "rmp")
    with pytest.raises(sc.ConfigError, match="tolerance"):
        sc.fit_exit_rule(snn, x, 8, tolerance=1.0)
    with pytest.raises(sc.ConfigError, match="stable_steps"):
        sc.fit_exit_rule(snn, x, 8, stable_steps=(0,))
    with pytest.raises(sc.ConfigError, match="windows"):
        sc.fit_exit_rule(snn, x, 8, windows=(-1,))
    with pytest.raises(sc.ConfigError, match="time steps"):
        sc.fit_exit_rule(snn, x, 0)
    with pytest.raises(sc.ConfigError, match="thresholds"):
        sc.ExitOnMargin((float("nan"),))
    with pytest.raises(sc.ConfigError, match="exit rule"):
        sc.simulate(snn, (x, torch.zeros(8, dtype=torch.long)), 4, exit_when={"patience": 2})
    fit = sc.fit_exit_rule(snn, x, 6)  # unlabelled data fits too (agreement with the full run needs no labels)
    assert fit.labels is None and fit.exit_accuracy() is None
    never = sc.ExitOnMargin((float("inf"), 1.0))
    assert never.to_dict()["thresholds"] == [None, 1.0]  # JSON has no infinity
