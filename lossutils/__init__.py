"""lossutils: numerically stable losses and their gradients, derived from likelihoods.

Every loss ``f`` has a gradient ``f_grad`` with the same arguments (except
``zero_one_loss``, and ``entropy``, which has no differentiable argument).
The class axis is the last axis. See the book *Losses from Likelihoods*.
"""

from . import (
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
