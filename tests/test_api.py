"""The public API as a contract: names, signatures and conventions shared by every loss.

The expected signatures are those of the design's API table. The conventions
(gradient shapes and dtypes, float32 preservation, no mutation of inputs,
reductions, the error for an unknown reduction) are checked uniformly over one
table of valid sample arguments per function.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

import lossutils
from lossutils.testing import assert_gradient_matches

# name -> the signature of the design's table
SIGNATURES = {
    "sigmoid": "(x)",
    "log_sigmoid": "(x)",
    "softplus": "(x)",
    "logsumexp": "(x, axis=-1, keepdims=False)",
    "softmax": "(x, axis=-1)",
    "log_softmax": "(x, axis=-1)",
    "mse_loss": "(input, target, reduction='mean')",
    "l1_loss": "(input, target, reduction='mean')",
    "huber_loss": "(input, target, delta=1.0, reduction='mean')",
    "smooth_l1_loss": "(input, target, beta=1.0, reduction='mean')",
    "log_cosh_loss": "(input, target, reduction='mean')",
    "gaussian_nll_loss": "(input, target, var, full=False, eps=1e-06, reduction='mean')",
    "laplace_nll_loss": "(input, target, scale, full=False, eps=1e-06, reduction='mean')",
    "poisson_nll_loss": "(input, target, log_input=True, full=False, eps=1e-08, reduction='mean')",
    "negative_binomial_nll_loss": "(input, target, total_count, reduction='mean')",
    "student_t_nll_loss": "(input, target, scale, df, reduction='mean')",
    "quantile_loss": "(input, target, quantile, reduction='mean')",
    "binary_cross_entropy": "(input, target, weight=None, reduction='mean')",
    "binary_cross_entropy_with_logits": "(input, target, weight=None, pos_weight=None, reduction='mean')",
    "nll_loss": "(input, target, weight=None, ignore_index=-100, reduction='mean')",
    "cross_entropy": "(input, target, weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0)",
    "sigmoid_focal_loss": "(input, target, alpha=0.25, gamma=2.0, reduction='mean')",
    "softmax_focal_loss": "(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction='mean')",
    "hinge_loss": "(input, target, margin=1.0, reduction='mean')",
    "squared_hinge_loss": "(input, target, margin=1.0, reduction='mean')",
    "multiclass_hinge_loss": "(input, target, margin=1.0, reduction='mean')",
    "multi_margin_loss": "(input, target, p=1, margin=1.0, weight=None, reduction='mean')",
    "square_loss": "(input, target, reduction='mean')",
    "logistic_loss": "(input, target, base=2.0, reduction='mean')",
    "zero_one_loss": "(input, target, reduction='mean')",
    "soft_margin_loss": "(input, target, reduction='mean')",
    "multilabel_soft_margin_loss": "(input, target, weight=None, reduction='mean')",
    "multilabel_margin_loss": "(input, target, reduction='mean')",
    "margin_ranking_loss": "(input1, input2, target, margin=0.0, reduction='mean')",
    "cosine_embedding_loss": "(input1, input2, target, margin=0.0, reduction='mean')",
    "hinge_embedding_loss": "(input, target, margin=1.0, reduction='mean')",
    "entropy": "(p, axis=-1)",
    "categorical_cross_entropy": "(p, q, axis=-1)",
    "kl_divergence": "(p, q, axis=-1)",
    "kl_div": "(input, target, reduction='mean', log_target=False)",
    "gaussian_kl": "(mu, logvar, mu_prior=0.0, logvar_prior=0.0, axis=-1)",
    "vae_loss": "(x, recon, mu, logvar, likelihood='bernoulli', reduction='mean')",
    "contrastive_loss": "(x1, x2, target, margin=1.0, reduction='mean')",
    "triplet_margin_loss": (
        "(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-06, swap=False, squared=False, "
        "reduction='mean')"
    ),
    "nt_xent_loss": "(z1, z2, temperature=0.5, reduction='mean')",
    "bradley_terry_loss": "(chosen, rejected, reduction='mean')",
    "dpo_loss": (
        "(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
        "reference_rejected_logps, beta=0.1, label_smoothing=0.0, reduction='mean')"
    ),
    "info_nce_loss": "(query, key, temperature=0.07, reduction='mean')",
    "clip_loss": "(image_embeds, text_embeds, temperature=0.07, reduction='mean')",
    "siglip_loss": "(image_embeds, text_embeds, scale=10.0, bias=-10.0, reduction='mean')",
    "l2_penalty": "(params, lam)",
    "l1_penalty": "(params, lam)",
    "ddpm_posterior": "(betas)",
    "ddpm_elbo_weights": "(betas)",
    "ddpm_noise_loss": "(noise_pred, noise, t, betas, weighting='elbo', reduction='mean')",
    "ctc_loss": (
        "(log_probs, targets, input_lengths, target_lengths, blank=0, reduction='mean', "
        "zero_infinity=False)"
    ),
}
ACTIVATIONS = {"sigmoid", "log_sigmoid", "softplus", "logsumexp", "softmax", "log_softmax"}
# the diffusion schedule's closed forms are not losses
NO_GRADIENT = ACTIVATIONS | {"zero_one_loss", "entropy", "ddpm_posterior", "ddpm_elbo_weights"}
LOSSES_WITH_GRADIENT = sorted(set(SIGNATURES) - NO_GRADIENT)


def _samples():
    """name -> (positional args, differentiable argument positions); all float64."""
    rng = np.random.default_rng(0)
    x, y, z = (rng.normal(size=(4, 3)) for _ in range(3))
    prob = rng.uniform(0.05, 0.95, size=(4, 3))
    bits = rng.integers(0, 2, size=(4, 3)).astype(np.float64)
    signs = 2 * bits - 1
    index = np.array([0, 2, 1, 2])
    positive = rng.uniform(0.5, 2.0, size=(4, 3))
    counts = np.random.default_rng(1).poisson(2.0, size=(4, 3)).astype(np.float64)
    q = lossutils.softmax(y)
    return {
        "mse_loss": ((x, y), (0,)),
        "l1_loss": ((x, y), (0,)),
        "huber_loss": ((2 * x, y), (0,)),
        "smooth_l1_loss": ((2 * x, y), (0,)),
        "log_cosh_loss": ((x, y), (0,)),
        "gaussian_nll_loss": ((x, y, positive), (0, 2)),
        "laplace_nll_loss": ((x, y, positive), (0, 2)),
        "poisson_nll_loss": ((x, counts), (0,)),
        "negative_binomial_nll_loss": ((x, counts, positive), (0, 2)),
        "student_t_nll_loss": ((x, y, positive, 3 * positive), (0, 2, 3)),
        "quantile_loss": ((x, y, 0.3), (0,)),
        "binary_cross_entropy": ((prob, bits), (0,)),
        "binary_cross_entropy_with_logits": ((x, bits), (0,)),
        "nll_loss": ((lossutils.log_softmax(x), index), (0,)),
        "cross_entropy": ((x, index), (0,)),
        "sigmoid_focal_loss": ((x, bits), (0,)),
        "softmax_focal_loss": ((x, index), (0,)),
        "hinge_loss": ((x, signs), (0,)),
        "squared_hinge_loss": ((x, signs), (0,)),
        "multiclass_hinge_loss": ((x, index), (0,)),
        "multi_margin_loss": ((x, index), (0,)),
        "square_loss": ((x, signs), (0,)),
        "logistic_loss": ((x, signs), (0,)),
        "soft_margin_loss": ((x, signs), (0,)),
        "multilabel_soft_margin_loss": ((x, bits), (0,)),
        "multilabel_margin_loss": (
            (x, np.array([[0, -1, -1], [2, 1, -1], [-1, 0, 0], [1, 0, 2]])),
            (0,),
        ),
        "margin_ranking_loss": ((x, y, signs), (0, 1)),
        "cosine_embedding_loss": ((x, y, signs[:, 0]), (0, 1)),
        "hinge_embedding_loss": ((np.abs(x), signs), (0,)),
        "categorical_cross_entropy": ((lossutils.softmax(x), q), (1,)),
        "kl_divergence": ((lossutils.softmax(x), q), (1,)),
        "kl_div": ((lossutils.log_softmax(x), q), (0,)),
        "gaussian_kl": ((x, y), (0, 1)),
        "vae_loss": ((bits, x, y[:, :2], z[:, :2]), (1, 2, 3)),
        "contrastive_loss": ((x, y, bits[:, 0]), (0, 1)),
        "triplet_margin_loss": ((x, y, z), (0, 1, 2)),
        "nt_xent_loss": ((x, y), (0, 1)),
        "bradley_terry_loss": ((x, y), (0, 1)),
        "dpo_loss": ((x - 5, y - 5, z - 5, x - 6), (0, 1)),
        "info_nce_loss": ((x, y), (0, 1)),
        "clip_loss": ((x, y), (0, 1)),
        "siglip_loss": ((x, y), (0, 1)),
        "l2_penalty": ((x, 0.3), (0,)),
        "l1_penalty": ((x, 0.3), (0,)),
        "ddpm_noise_loss": ((x, y, np.array([1, 3, 2, 3]), np.array([0.1, 0.2, 0.3])), (0,)),
        # targets of length 1: CTC's "mean" divides by the target lengths, here a plain mean
        "ctc_loss": (
            (
                lossutils.log_softmax(rng.normal(size=(5, 2, 3))),
                np.array([[1], [2]]),
                np.array([5, 4]),
                np.array([1, 1]),
            ),
            (0,),
        ),
    }


SAMPLES = _samples()
WITH_REDUCTION = sorted(n for n in SAMPLES if "reduction" in SIGNATURES[n])


def test_public_names_are_the_design_table():
    expected = (
        set(SIGNATURES)
        | {n + "_grad" for n in LOSSES_WITH_GRADIENT}
        | {n + "_value_and_grad" for n in LOSSES_WITH_GRADIENT}
    )
    assert set(lossutils.__all__) == expected
    assert len(lossutils.__all__) == len(set(lossutils.__all__)), "duplicates in __all__"
    assert SAMPLES.keys() == set(LOSSES_WITH_GRADIENT), "every loss with a gradient needs a sample"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature(name):
    assert str(inspect.signature(getattr(lossutils, name))) == SIGNATURES[name]


@pytest.mark.parametrize("name", LOSSES_WITH_GRADIENT)
@pytest.mark.parametrize("suffix", ["_grad", "_value_and_grad"])
def test_gradient_takes_the_same_arguments(name, suffix):
    assert inspect.signature(getattr(lossutils, name + suffix)) == inspect.signature(
        getattr(lossutils, name)
    )


def _assert_identical(actual, expected, what):
    """Same type, dtype, shape and bits (NaN where NaN), recursively through tuples and lists."""
    if isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected) and len(actual) == len(expected), what
        for a, e in zip(actual, expected, strict=True):
            _assert_identical(a, e, what)
        return
    assert type(actual) is type(expected), f"{what}: {type(actual)} is not {type(expected)}"
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    np.testing.assert_array_equal(actual, expected, err_msg=what, strict=True)


@pytest.mark.parametrize("name", LOSSES_WITH_GRADIENT)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_value_and_grad_is_the_loss_and_its_gradient(name, dtype):
    # one pass gives bit for bit what the two calls give, for every reduction and dtype
    args, _ = SAMPLES[name]
    args = tuple(
        a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in args
    )
    reductions = ("mean", "sum", "none") if name in WITH_REDUCTION else (None,)
    for reduction in reductions:
        value, grad = _call(name, args, reduction, "_value_and_grad")
        what = f"{name}_value_and_grad, {np.dtype(dtype).name}, reduction={reduction}"
        _assert_identical(value, _call(name, args, reduction), what + ": the value")
        _assert_identical(grad, _call(name, args, reduction, "_grad"), what + ": the gradient")


@pytest.mark.parametrize("name", sorted(lossutils.__all__))
def test_docstring(name):
    doc = inspect.getdoc(getattr(lossutils, name)) or ""
    for section in ("Parameters", "Returns", "Examples", ">>>"):
        assert section in doc, f"{name}'s docstring lacks {section!r}"
    if not name.endswith("_grad"):  # also skips *_value_and_grad, which cite through their loss
        assert ":cite:" in doc, f"{name}'s docstring cites no reference"


def _call(name, args, reduction=None, suffix=""):
    kwargs = {} if reduction is None else {"reduction": reduction}
    return getattr(lossutils, name + suffix)(*args, **kwargs)


def _as_tuple(grad):
    return grad if isinstance(grad, tuple) else (grad,)


@pytest.mark.parametrize("name", LOSSES_WITH_GRADIENT)
def test_gradient_matches_finite_differences(name):
    args, argnums = SAMPLES[name]
    reductions = ("mean", "sum", "none") if name in WITH_REDUCTION else (None,)
    for reduction in reductions:
        kwargs = {} if reduction is None else {"reduction": reduction}
        loss = getattr(lossutils, name)
        grad = getattr(lossutils, name + "_grad")
        assert_gradient_matches(loss, grad, args, argnums, kwargs=kwargs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES_WITH_GRADIENT)
def test_float32_stays_float32(name):
    args, argnums = SAMPLES[name]
    args32 = tuple(
        a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
        for a in args
    )
    assert np.asarray(_call(name, args32)).dtype == np.float32
    for position, grad in zip(argnums, _as_tuple(_call(name, args32, suffix="_grad")), strict=True):
        assert grad.dtype == np.float32 and grad.shape == np.shape(args[position]), name


# the losses with two or more floating array arguments (mixed dtypes are possible)
MIXABLE = [
    name
    for name in LOSSES_WITH_GRADIENT
    if sum(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in SAMPLES[name][0]) >= 2
]


@pytest.mark.parametrize("name", MIXABLE)
@pytest.mark.parametrize("narrow, wide", [(np.float32, np.float64), (np.float16, np.float32)])
def test_each_gradient_takes_its_arguments_dtype(name, narrow, wide):
    """With mixed floating dtypes the loss is computed in their promotion (``wide``) and each
    gradient rounded once to its own argument's dtype: bit for bit the all-``wide`` loss and
    gradients of the same (exactly widened) values, each rounded to its argument's dtype.
    Each floating argument is narrowed in turn, and (three or more) each left wide in turn."""
    args, argnums = SAMPLES[name]
    floats = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype == np.float64]
    patterns = [{i} for i in floats]
    if len(floats) > 2:
        patterns += [set(floats) - {i} for i in floats]
    for narrowed in patterns:
        mixed = tuple(
            (a.astype(narrow) if i in narrowed else a.astype(wide)) if i in floats else a
            for i, a in enumerate(args)
        )
        widened = tuple(a.astype(wide) if i in floats else a for i, a in enumerate(mixed))
        value, grads = _call(name, mixed, suffix="_value_and_grad")
        expected_value = _call(name, widened)
        _assert_identical(np.asarray(value), np.asarray(expected_value), f"{name} value")
        expected = _as_tuple(_call(name, widened, suffix="_grad"))
        pairs = zip(argnums, _as_tuple(grads), expected, strict=True)
        for position, grad, wide_grad in pairs:
            want = np.dtype(narrow if position in narrowed else wide)
            what = f"{name}: the gradient w.r.t. argument {position}, arguments {narrowed} {narrow}"
            assert grad.dtype == want, what
            _assert_identical(grad, wide_grad.astype(want), what)
        for position, grad in zip(
            argnums, _as_tuple(_call(name, mixed, suffix="_grad")), strict=True
        ):
            assert grad.dtype == np.dtype(narrow if position in narrowed else wide), name


@pytest.mark.parametrize("name", LOSSES_WITH_GRADIENT)
def test_inputs_are_not_modified(name):
    args, _ = SAMPLES[name]
    copies = [np.copy(a) for a in args]
    _call(name, args)
    _call(name, args, suffix="_grad")
    for before, after in zip(copies, args, strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", WITH_REDUCTION)
def test_reductions_agree(name):
    args, _ = SAMPLES[name]
    none = np.asarray(_call(name, args, "none"))
    assert np.isclose(_call(name, args, "sum"), none.sum(), rtol=1e-12)
    assert np.isclose(_call(name, args, "mean"), none.mean(), rtol=1e-12)
    mean_grads = _as_tuple(_call(name, args, "mean", "_grad"))
    sum_grads = _as_tuple(_call(name, args, "sum", "_grad"))
    for mean_grad, sum_grad in zip(mean_grads, sum_grads, strict=True):
        np.testing.assert_allclose(mean_grad * none.size, sum_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", WITH_REDUCTION)
@pytest.mark.parametrize("suffix", ["", "_grad"])
def test_unknown_reduction_is_an_error(name, suffix):
    args, _ = SAMPLES[name]
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        _call(name, args, "avg", suffix)
    if name != "zero_one_loss":
        with pytest.raises(ValueError, match="reduction"):
            _call(name, args, "Mean", suffix)


def test_zero_one_loss_counts_mistakes():
    # a margin of exactly 0 counts as a mistake
    assert (
        lossutils.zero_one_loss([2.0, -1.0, 0.0, 3.0], [1.0, 1.0, 1.0, -1.0], reduction="sum") == 3
    )


# the family modules whose ``__all__`` lossutils exports (a new family adds itself there)
PUBLIC_MODULES = tuple(module.__name__.split(".")[-1] for module in lossutils._MODULES)


def test_one_public_path_per_function():
    # each name is exported by exactly one public module, and lossutils.__all__ is their union
    owners = {}
    for module_name in PUBLIC_MODULES:
        module = getattr(lossutils, module_name)
        for name in module.__all__:
            assert name not in owners, f"{name} is public in {owners.get(name)} and {module_name}"
            owners[name] = module_name
            assert getattr(lossutils, name) is getattr(module, name)
    assert sorted(owners) == sorted(lossutils.__all__)
    # the implementation modules are private (a leading underscore)
    package = Path(lossutils.__file__).parent
    public_files = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    helpers = {"symbolic", "testing", "plotting", "datasets"}
    assert public_files == set(PUBLIC_MODULES) | helpers


@pytest.mark.parametrize(
    "name", sorted(lossutils.activations.__all__ + lossutils.classification.__all__)
)
def test_docstring_states_what_raises(name):
    doc = inspect.getdoc(getattr(lossutils, name)) or ""
    assert "\nRaises\n------\nValueError\n" in doc, f"{name}'s docstring lacks a Raises section"
    returns, raises = doc.index("\nReturns\n"), doc.index("\nRaises\n")
    assert returns < raises, f"{name}: Raises must follow Returns (numpydoc order)"


def _underflowing(args):
    """The sample's float arguments stretched so that exponentials and products underflow
    (logits of 1e3 and more, tiny spreads): the inputs of a confident, trained model."""
    return tuple(
        a * 1e3 if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in args
    )


@pytest.mark.parametrize("name", LOSSES_WITH_GRADIENT)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_results_do_not_depend_on_the_callers_seterr(name, dtype):
    # underflow is an expected outcome inside the kernels: np.seterr(all="raise") or
    # under="warn" must neither raise, nor warn, nor change a bit of a result
    args, _ = SAMPLES[name]
    for sample in (args, _underflowing(args)):
        sample = tuple(
            a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
            for a in sample
        )
        try:
            with np.errstate(all="ignore"):
                expected = _call(name, sample, suffix="_value_and_grad")
        except ValueError:  # a stretched sample outside the domain (CTC log-probabilities)
            continue
        for state in ({"all": "raise"}, {"all": "warn"}):
            with np.errstate(**state), warnings.catch_warnings():
                warnings.simplefilter("error")
                actual = _call(name, sample, suffix="_value_and_grad")
            _assert_identical(actual, expected, f"{name}, {np.dtype(dtype).name}, {state}")


def test_every_public_function_ignores_underflow_once():
    for module in lossutils._MODULES:
        for name in module.__all__:
            function = getattr(module, name)
            assert getattr(function, "underflow_ignored", False), name
            assert getattr(lossutils, name) is function, name
