"""QuantReLU: Fast-SNN's b-bit quantizer with learnable clip and straight-through gradients."""
from __future__ import annotations

import pytest
import torch

from snnconvert.errors import ConfigError
from snnconvert.quantization import QuantReLU

BITS = [2, 3, 4, 8]
ALPHA = 1.75  # exactly representable in float32, so .double() keeps it


def formula(x: torch.Tensor, alpha: float, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    return alpha * torch.round(torch.clamp(x / alpha, 0, 1) * levels) / levels


def grid(alpha: float, bits: int) -> torch.Tensor:
    """Negatives, values inside, exact level points, and values above alpha."""
    levels = 2**bits - 1
    exact = torch.arange(levels + 1, dtype=torch.float64) * alpha / levels
    return torch.cat([torch.linspace(-2 * alpha, 3 * alpha, 401, dtype=torch.float64), exact])


@pytest.mark.parametrize("bits", BITS)
def test_forward_matches_formula(bits: int) -> None:
    q = QuantReLU(bits, alpha=ALPHA).double()
    x = grid(ALPHA, bits)
    torch.testing.assert_close(q(x), formula(x, ALPHA, bits), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits", BITS)
def test_output_takes_at_most_2_pow_b_values_on_the_level_grid(bits: int) -> None:
    q = QuantReLU(bits, alpha=ALPHA).double()
    levels = 2**bits - 1
    out = q(torch.linspace(-3, 5, 20001, dtype=torch.float64)).detach()
    assert out.unique().numel() <= 2**bits
    k = out * levels / ALPHA
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)
    assert k.min() >= 0 and k.max() <= levels


def test_exact_level_points_are_fixed_points() -> None:
    q = QuantReLU(3, alpha=ALPHA).double()
    levels = torch.arange(8, dtype=torch.float64) * ALPHA / 7
    torch.testing.assert_close(q(levels), levels, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits", BITS)
def test_grad_x_is_one_inside_zero_outside(bits: int) -> None:
    q = QuantReLU(bits, alpha=ALPHA).double()
    x = torch.tensor([-3.0, -0.2, 0.01, 0.4, 0.9, 1.74, 1.8, 4.0], dtype=torch.float64, requires_grad=True)
    q(x).sum().backward()
    expected = torch.tensor([0, 0, 1, 1, 1, 1, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(x.grad, expected)


def _inside_above_below(alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    inside = (0.05 + 0.9 * torch.rand(50, generator=gen, dtype=torch.float64)) * alpha
    above = alpha * (1.1 + torch.rand(20, generator=gen, dtype=torch.float64))
    below = -alpha * (0.1 + torch.rand(20, generator=gen, dtype=torch.float64))
    return inside, above, below


@pytest.mark.parametrize("bits", BITS)
def test_grad_alpha_matches_finite_differences_of_ste_surrogate(bits: int) -> None:
    """The STE differentiates f(a) = a * (u(a) + r0) / L, r0 = round(u) - u frozen at a0."""
    levels = 2**bits - 1
    a0 = ALPHA
    x = torch.cat(_inside_above_below(a0))
    u0 = torch.clamp(x / a0, 0, 1) * levels
    r0 = torch.round(u0) - u0

    def surrogate(a: float) -> float:
        u = torch.clamp(x / a, 0, 1) * levels
        return float((a * (u + r0) / levels).sum())

    eps = 1e-6
    numeric = (surrogate(a0 + eps) - surrogate(a0 - eps)) / (2 * eps)
    q = QuantReLU(bits, alpha=a0).double()
    q(x).sum().backward()
    assert q.alpha.grad is not None
    assert float(q.alpha.grad) == pytest.approx(numeric, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("bits", BITS)
def test_grad_alpha_closed_form_per_element(bits: int) -> None:
    """dq/dalpha = (q - x)/alpha inside (0, alpha), 1 above alpha, 0 below 0."""
    inside, above, below = _inside_above_below(ALPHA)
    for x, expected in [
        (inside, lambda x, q: (q - x) / ALPHA),
        (above, lambda x, q: torch.ones_like(x)),
        (below, lambda x, q: torch.zeros_like(x)),
    ]:
        for xi in x:
            q = QuantReLU(bits, alpha=ALPHA).double()
            out = q(xi)
            out.backward()
            assert q.alpha.grad is not None
            torch.testing.assert_close(q.alpha.grad, expected(xi, out.detach()))


@pytest.mark.parametrize("bad", [0, 17, -1, 2.0, True, "4"])
def test_bad_bits_raise_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="bits"):
        QuantReLU(bad)  # type: ignore[arg-type]
    q = QuantReLU(4)
    with pytest.raises(ConfigError, match="bits"):
        q.set_bits(bad)  # type: ignore[arg-type]
    assert q.bits == 4


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_alpha_raises_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        QuantReLU(4, alpha=bad)


def test_set_bits_changes_levels_and_keeps_alpha() -> None:
    q = QuantReLU(4, alpha=2.0)
    assert q.levels == 15
    q.set_bits(2)
    assert q.bits == 2 and q.levels == 3 and q.alpha.item() == 2.0
    assert q(torch.tensor([0.9])).item() == pytest.approx(2.0 / 3)


def test_alpha_is_a_scalar_parameter_and_clamped_positive() -> None:
    q = QuantReLU(2, alpha=1.0)
    assert isinstance(q.alpha, torch.nn.Parameter) and q.alpha.shape == torch.Size([])
    with torch.no_grad():
        q.alpha.fill_(-1.0)
    out = q(torch.tensor([-1.0, 0.5, 2.0]))
    assert torch.isfinite(out).all()
    assert out.max().item() == pytest.approx(1e-4)


def test_extra_repr_shows_bits_and_alpha() -> None:
    text = repr(QuantReLU(3, alpha=6.0))
    assert "bits=3" in text and "alpha=6" in text
