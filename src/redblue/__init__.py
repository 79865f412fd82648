"""redblue: red-team open-weight chat models, make them safer, measure, repeat.

The package follows the data flow: ``models`` (load + adapters) -> ``data``
(prompt sets) -> ``activations`` -> ``directions`` -> ``interventions`` ->
``attacks`` / ``defenses`` / ``detect`` -> ``evaluate`` -> ``report``; ``cli``
sits on top. Heavy modules (torch, transformers) are imported lazily by the
submodules that need them, so ``import redblue`` is cheap.
"""

from redblue.errors import RedblueError

__version__ = "0.1.0"
__all__ = ["RedblueError", "__version__"]
