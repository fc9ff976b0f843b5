"""Pure Graph -> Graph passes: autodiff, simplification (CSE/DCE/folding), a pipeline runner."""

from scg.passes.autodiff import grad
from scg.passes.pipeline import run_pipeline
from scg.passes.simplify import cse, dce, fold, simplify
from scg.passes.vjp_rules import vjp_rules

__all__ = ["cse", "dce", "fold", "grad", "run_pipeline", "simplify", "vjp_rules"]
