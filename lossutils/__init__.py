"""lossutils: numerically stable losses and their gradients, derived from likelihoods.

Every loss ``f`` has a gradient ``f_grad`` with the same arguments (except
``zero_one_loss``, and ``entropy``, which has no differentiable argument).
The class axis is the last axis. See the book *Losses from Likelihoods*.
"""

from . import (
    _numerics,
    activations,
    classification,
    contrastive,
    diffusion,
    divergences,
    metric,
    preference,
    regression,
    regularization,
    sequence,
)
from .activations import *  # noqa: F403
from .classification import *  # noqa: F403
from .contrastive import *  # noqa: F403
from .diffusion import *  # noqa: F403
from .divergences import *  # noqa: F403
from .metric import *  # noqa: F403
from .preference import *  # noqa: F403
from .regression import *  # noqa: F403
from .regularization import *  # noqa: F403
from .sequence import *  # noqa: F403

__version__ = "0.1.0"

# The public modules, each with its own ``__all__``; the package exports their union, once.
_MODULES = (
    activations,
    regression,
    classification,
    divergences,
    metric,
    regularization,
    preference,
    contrastive,
    sequence,
    diffusion,
)

__all__ = [name for module in _MODULES for name in module.__all__]


def _ignore_underflow_in_public_functions() -> None:
    """Wrap every public function once (in its module and here) so that its results and
    its silence do not depend on the caller's ``np.seterr`` for underflow."""
    for module in _MODULES:
        for name in module.__all__:
            function = getattr(module, name)
            if callable(function) and not getattr(function, "underflow_ignored", False):
                function = _numerics.underflow_ignored(function)
                setattr(module, name, function)
            globals()[name] = function


_ignore_underflow_in_public_functions()
