"""Step by Step Network (StepsNet, arXiv:2511.14329) for PyTorch and timm.

``import stepsnet`` registers every Steps model with timm, so ``timm.create_model('steps_resnet50')`` works.
"""
from . import models  # noqa: F401  (registers the timm entrypoints)
from .steps import StepPlan, Steps, plan_steps

__version__ = '0.1.0'
__all__ = ['StepPlan', 'Steps', 'plan_steps', '__version__']
