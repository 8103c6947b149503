"""The regularizers' base and registry (trials.regularizers.base): plug-ins found by name, bad options named."""

from __future__ import annotations

import pytest

from trials.errors import UserError
from trials.regularizers import make_regularizer


def test_make_regularizer_names_bad_options():
    assert make_regularizer("none") is None
    with pytest.raises(UserError, match="unknown"):
        make_regularizer("l0")
    with pytest.raises(UserError, match="dafp"):
        make_regularizer("dafp", target=1.5)
    with pytest.raises(UserError, match="ffr"):
        make_regularizer("ffr", bogus=1)


def test_a_regularizer_is_found_through_the_registry_like_a_plugin(monkeypatch):
    """A method is a Regularizer subclass registered under its name: make_regularizer finds
    it by that name (as the built-in dafp, ffr and paam are), and a base without a penalty
    cannot be built."""
    from trials.regularizers import REGISTRY, REGULARIZERS, Regularizer, register

    assert REGULARIZERS == ("none", "dafp", "ffr", "paam")
    assert {REGISTRY[n].__name__ for n in REGULARIZERS[1:]} == {"DafpSparsity", "FeatureFlow", "PaamGates"}
    monkeypatch.setattr("trials.regularizers.base.REGISTRY", dict(REGISTRY))
    import trials.regularizers as regs

    monkeypatch.setattr(regs, "REGISTRY", regs.base.REGISTRY)

    @register
    class L2Scales(Regularizer):
        name = "l2scales"

        def __init__(self, weight: float = 1.0) -> None:
            super().__init__()
            self.weight = weight

        def penalty(self, model):
            return self.weight * sum((m.weight**2).sum() for m in regs.bn_layers(model))

    made = make_regularizer("l2scales", weight=0.5)
    assert isinstance(made, L2Scales) and made.weight == 0.5
    assert "l2scales" not in REGISTRY  # the test's registry was a copy
    with pytest.raises(TypeError, match="abstract"):
        Regularizer()
