"""Argument checks shared by every loss (private).

Every public function validates its arguments here, so that one bad input
always produces the same kind of message: ``ValueError`` naming the argument,
what was expected and what was given. (The reductions live in ``_reduction``;
``reduce`` and ``reduction_scale`` are also importable from here for the modules
that have not moved to it yet.)
"""

from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np

from ._numerics import to_dtype
from ._reduction import reduce, reduction_scale, sum_to_shape  # noqa: F401  (see the module docstring)

REDUCTIONS = ("mean", "sum", "none")


def describe(value) -> str:
    """A short description of a bad value for an error message."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_choice(value, name: str, allowed) -> str:
    """One of the strings ``allowed`` (an array or other non-string is refused by name,
    not by NumPy's "truth value of an array is ambiguous")."""
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {describe(value)}")
    return value


def check_reduction(reduction, allowed=REDUCTIONS) -> str:
    return check_choice(reduction, "reduction", allowed)


def as_array(value, name: str) -> np.ndarray:
    """``np.asarray(value)``, with a ``ValueError`` naming ``name`` for a ragged sequence.

    NumPy refuses nested sequences of unequal lengths (``[[1, 2], [3]]``) with a message
    about "an inhomogeneous shape" that names no argument.
    """
    try:
        return np.asarray(value)
    except ValueError:
        raise ValueError(
            f"{name} must be a rectangular array of numbers; got a ragged sequence "
            "(nested sequences of unequal lengths)"
        ) from None


def as_float_array(value, name: str) -> np.ndarray:
    """``value`` as a floating array; integer and bool data count as float64.

    Never copies a floating input, and callers never write into the result.
    """
    array = as_array(value, name)
    if array.dtype.kind in "biu":
        return array.astype(np.float64)
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must be a real numeric array; got {describe(array)}")
    return array


def result_dtype(*values) -> np.dtype:
    """NumPy's promotion of the floating arguments (integer data count as float64).

    Python scalars are 'weak' (NEP 50): a float32 array with ``var=1.0`` stays float32.
    """
    dtypes = []
    for value in values:
        if value is None or isinstance(value, numbers.Number) and not isinstance(value, np.generic):
            continue
        try:
            dtype = np.asarray(value).dtype
        except ValueError:  # ragged: the argument's own check (as_array) names it
            continue
        if dtype.kind not in "biuf":  # complex, object, text, dates: so does a non-number
            continue
        dtypes.append(np.float64 if dtype.kind in "biu" else dtype)
    return np.result_type(*dtypes) if dtypes else np.dtype(np.float64)


def float_arrays(names_values: dict, dtype=None, rows=False) -> tuple[np.ndarray, ...]:
    """Convert several named arguments to one common floating dtype.

    ``rows=True`` (for rows along the last axis, as embeddings): in C order. The BLAS
    kernels of a row's dot products and of matrix products group the terms by the memory
    layout, so a Fortran-order or strided input is copied to C order, and the results do
    not depend on the layout.
    """
    arrays = {n: as_float_array(v, n) for n, v in names_values.items()}
    dtype = result_dtype(*arrays.values()) if dtype is None else dtype
    order = "C" if rows else "K"
    return tuple(a.astype(dtype, order=order, copy=False) for a in arrays.values())


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} must have the same shape as {name_a} {a.shape}; got shape {b.shape}"
        )


def check_broadcastable(value: np.ndarray, shape: tuple, name: str, against: str) -> None:
    try:
        out = np.broadcast_shapes(value.shape, shape)
    except ValueError:
        out = None
    if out != tuple(shape):
        raise ValueError(
            f"{name} must broadcast to the shape of {against} {tuple(shape)}; "
            f"got shape {value.shape}"
        )


def _extremes(value: np.ndarray):
    """The smallest and largest entries ignoring NaN (NaN if all are); two passes, no
    full-size temporaries (the checks run on every call of a loss)."""
    if value.size == 0:
        return np.nan, np.nan
    with np.errstate(invalid="ignore"):
        lo, hi = np.min(value), np.max(value)  # (faster than fmin/fmax; NaN if any is)
        if np.isnan(lo) or np.isnan(hi):
            return np.fmin.reduce(value, axis=None), np.fmax.reduce(value, axis=None)
        return lo, hi


def check_unit_interval(value: np.ndarray, name: str) -> None:
    """Values in [0, 1]; NaN passes (it propagates to the result)."""
    value = np.asarray(value)
    if value.dtype.kind == "f" and value.dtype.isnative and value.size:
        # one pass where two would do: read as unsigned integers, the bits of non-negative
        # floats grow with them and those of negative ones (sign bit set) exceed 1's, so
        # every entry is in [0, 1] if the largest is at most 1's bits. Else (-0, NaN or a
        # bad value) the two passes below decide
        unsigned = np.dtype(f"u{value.dtype.itemsize}")
        if value.view(unsigned).max() <= np.array(1, value.dtype).view(unsigned):
            return
    lo, hi = _extremes(value)
    if lo < 0 or hi > 1:
        bad = (value < 0) | (value > 1)
        raise ValueError(f"{name} must lie in [0, 1]; got {describe(value[bad].flat[0])}")


def check_nonnegative(value, name: str) -> None:
    """Values >= 0; NaN passes."""
    value = np.asarray(value)
    if _extremes(value)[0] < 0:
        raise ValueError(f"{name} must be non-negative; got {describe(value[value < 0].flat[0])}")


def check_positive_scalar(value, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        expected = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {expected} finite number; got {describe(value)}")
    return float(value)


def check_axis(axis, ndim: int, name: str = "axis") -> int:
    """An integer axis of an array of ``ndim`` dimensions (negative ones count from the end)."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(
            f"{name} must be an integer in [{-ndim}, {ndim - 1}]; got {describe(axis)}"
        )
    return int(axis)


def check_has_axis(array: np.ndarray, name: str, axis=-1) -> int:
    """``axis`` of ``array`` as a non-negative index: an integer naming one of its axes
    (a 0-d array has none)."""
    if array.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension; got shape {array.shape}")
    return check_axis(axis, array.ndim)


def check_class_axis(array: np.ndarray, name: str, axis=-1) -> int:
    """``axis`` of ``array`` (an integer naming one of its axes) along which it holds a
    distribution or the scores of the classes: at least one element there. A distribution
    over no outcomes is none (its probabilities cannot sum to 1): softmax, entropy and
    the divergences refuse it, as cross_entropy refuses an empty class axis."""
    index = check_has_axis(array, name, axis)
    if array.shape[index] == 0:
        raise ValueError(
            f"{name} must have at least one element along axis {axis}; got shape {array.shape}"
        )
    return index


def check_temperature(value, name: str = "temperature") -> float:
    """A positive finite temperature of at least 2 / 1.8e308, so that the difference of two
    logits (cosines over it) is finite: below, logits and their differences overflow (a
    subnormal temperature makes every logit overflow) and the losses were NaN."""
    value = check_positive_scalar(value, name)
    smallest = 2 / float(np.finfo(np.float64).max)
    if value < smallest:
        raise ValueError(
            f"{name} must be a positive finite number of at least {smallest:.4g} (the "
            f"differences of its logits finite); got {describe(value)}"
        )
    return value


def check_pm1_labels(target: np.ndarray, name: str = "target") -> None:
    """Margin losses take labels in {-1, +1}; NaN passes."""
    lo, hi = _extremes(np.abs(target))  # (|t| is 1 for every label that is not NaN)
    if lo < 1 or hi > 1:
        bad = ~((target == 1) | (target == -1) | np.isnan(target))
        raise ValueError(
            f"{name} must hold labels in {{-1, +1}}; got {describe(target[bad].flat[0])}"
        )


def check_class_input(input: np.ndarray, name: str = "input") -> int:
    """Class scores with the class axis last; returns the number of classes C >= 1."""
    if input.ndim < 1 or input.shape[-1] == 0:
        raise ValueError(
            f"{name} must have a non-empty class axis (the last axis); got shape {input.shape}"
        )
    return input.shape[-1]


def check_ignore_index(ignore_index):
    """A public ``ignore_index``: an integer (Python or NumPy, not a bool). None is refused
    as PyTorch refuses it: there is no "ignore nothing" value (the default -100 is no
    class index)."""
    if isinstance(ignore_index, (int, np.integer)) and not isinstance(ignore_index, bool):
        return ignore_index
    raise ValueError(f"ignore_index must be an integer; got {describe(ignore_index)}")


def class_index_target(target, input_shape: tuple, ignore_index=None, name: str = "target"):
    """Integer class indices of shape ``input_shape[:-1]``, checked against ``C``.

    Returns ``(index, valid)``: ``index`` with ignored entries replaced by 0 (safe to
    gather with) and the boolean mask of entries that count. ``ignore_index`` None (the
    losses that have none) counts every entry; else it is checked
    (:func:`check_ignore_index`).
    """
    target = as_array(target, name)
    if target.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices; got dtype {target.dtype}")
    if ignore_index is not None:
        check_ignore_index(ignore_index)
    if target.shape != tuple(input_shape[:-1]):
        raise ValueError(
            f"{name} of class indices must have shape {tuple(input_shape[:-1])} "
            f"(input's shape without the class axis); got shape {target.shape}"
        )
    num_classes = input_shape[-1]
    # the common case in two cheap reductions: every index a class and none ignored, so the
    # target itself is the index (no mask, no copy); a mask only to find what is not
    lo, hi = (target.min(), target.max()) if target.size else (0, 0)
    if lo >= 0 and hi < num_classes and not (ignore_index is not None and lo <= ignore_index <= hi):
        return target.astype(np.intp, copy=False), np.ones(target.shape, dtype=bool)
    valid = np.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if np.any(bad):
        raise ValueError(
            f"{name} must hold class indices in [0, {num_classes - 1}]"
            + ("" if ignore_index is None else f" (or ignore_index={ignore_index})")
            + f"; got {target[bad].flat[0]}"
        )
    return np.where(valid, target, 0).astype(np.intp), valid


def class_weight(weight, num_classes: int, dtype, name: str = "weight"):
    """A per-class weight vector of length C, or None."""
    if weight is None:
        return None
    weight = as_float_array(weight, name)
    if weight.shape != (num_classes,):
        raise ValueError(
            f"{name} must be a vector of length C={num_classes}; got shape {weight.shape}"
        )
    return weight.astype(dtype, copy=False)


def check_bool(value, name: str) -> bool:
    """A flag: ``True`` or ``False`` (also NumPy's), not any truthy value."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {describe(value)}")
    return bool(value)


def check_finite_scalar(value, name: str) -> float:
    """A finite real number (not bool), returned as a Python float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok:
        raise ValueError(f"{name} must be a finite real number; got {describe(value)}")
    return float(value)


def check_unit_interval_scalar(value, name: str) -> float:
    """A real number in [0, 1], returned as a Python float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1
    if not ok:
        raise ValueError(f"{name} must be a number in [0, 1]; got {describe(value)}")
    return float(value)


def check_log_base(value, name: str = "base") -> float:
    """The base of a logarithm: a finite number > 0 and != 1, returned as a Python float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value <= 0 or value == 1:
        raise ValueError(
            f"{name} must be a finite number > 0 and != 1 (a logarithm base); got {describe(value)}"
        )
    return float(value)


def check_scale_shape(value: np.ndarray, shape: tuple, name: str, against: str = "input") -> None:
    """A variance, scale or count parameter broadcasting to ``against``'s shape without changing it.

    Accepted: ``against``'s shape, the same number of dimensions with some of them 1
    (``(N, 1, H, W)`` for ``(N, C, H, W)``, ``(..., 1)``, ``(1, C)``), or a single value. A
    shape with fewer dimensions is refused: NumPy aligns it with the last axes, so the shape
    one dimension short that PyTorch's ``gaussian_nll_loss`` unsqueezes at the end would
    broadcast along the wrong axis here (pass ``value[..., None]``).
    """
    shape = tuple(shape)
    same_rank = value.ndim == len(shape) and all(
        n in (1, m) for n, m in zip(value.shape, shape, strict=True)
    )
    if same_rank or (value.size == 1 and value.ndim <= len(shape)):
        return
    hint = ""
    if len(shape) >= 1 and value.shape == shape[:-1]:
        hint = f" (one dimension short: pass {name}[..., None] for one value per row)"
    raise ValueError(
        f"{name} must broadcast to the shape of {against} {shape} with as many dimensions "
        f"(each equal to {against}'s or 1), or be a scalar; got shape {value.shape}{hint}"
    )


def grad_dtype(value, dtype) -> np.dtype:
    """The dtype of a gradient w.r.t. ``value``: its own floating dtype.

    Integer and bool data count as float64; a Python number takes ``dtype``, the
    dtype the loss is computed in.
    """
    if isinstance(value, numbers.Number) and not isinstance(value, np.generic):
        return np.dtype(dtype)
    kind = np.asarray(value).dtype.kind
    return np.dtype(np.float64) if kind in "biu" else np.asarray(value).dtype


def gradients_in_argument_dtypes(*names: str):
    """Decorator of a public ``X_grad`` or ``X_value_and_grad``: the gradient w.r.t. each
    argument in ``names`` (in the order the function returns them) takes that argument's
    own dtype (:func:`grad_dtype`).

    With mixed floating dtypes (a float32 input, a float64 target) a loss is computed, and
    its value returned, in their promotion; a gradient computed there is then rounded once
    to its argument's narrower dtype, as the design's "same shape and dtype as each
    argument" asks (PyTorch's autograd also gives each leaf's gradient its own dtype).
    """

    def decorate(function):
        parameters = list(inspect.signature(function).parameters)
        positions = [parameters.index(name) for name in names]
        pair = function.__name__.endswith("_value_and_grad")

        def argument(args, kwargs, position):
            if position < len(args):
                return args[position]
            return kwargs.get(parameters[position])

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            result = function(*args, **kwargs)
            grads = result[1] if pair else result
            single = not isinstance(grads, tuple)
            cast = tuple(
                g
                if g is None
                else to_dtype(g, grad_dtype(argument(args, kwargs, position), g.dtype))
                for g, position in zip((grads,) if single else grads, positions, strict=True)
            )
            grads = cast[0] if single else cast
            return (result[0], grads) if pair else grads

        return wrapper

    return decorate


def check_log_probability(value: np.ndarray, name: str) -> None:
    """Log-probabilities: values at most 0 (-inf allowed); NaN passes."""
    bad = value > 0
    if np.any(bad):
        raise ValueError(
            f"{name} must hold log-probabilities (at most 0); got {describe(value[bad].flat[0])}"
        )


def check_binary_labels(target: np.ndarray, name: str = "target") -> None:
    """Labels in {0, 1}; NaN passes."""
    bad = ~((target == 0) | (target == 1) | np.isnan(target))
    if np.any(bad):
        raise ValueError(
            f"{name} must hold labels in {{0, 1}}; got {describe(target[bad].flat[0])}"
        )


def check_scalar_at_least(value, name: str, lower: float) -> float:
    """A finite real number (not bool) >= ``lower``, returned as a Python float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < lower:
        raise ValueError(f"{name} must be a finite number >= {lower}; got {describe(value)}")
    return float(value)
