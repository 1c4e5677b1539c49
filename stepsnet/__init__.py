"""Step by Step Network (StepsNet, arXiv:2511.14329) for PyTorch and timm.

``import stepsnet`` registers every Steps model with timm, so ``timm.create_model('steps_resnet50')`` works;
``stepsnet.create_steps_model('resnet101')`` builds the Steps twin of any timm ResNet, ViT, Swin or ConvNeXt, and
``stepsnet.export_weights`` / ``stepsnet.load_model`` write and read weights in timm's ``local-dir:`` layout.
"""
from . import models  # noqa: F401  (registers the timm entrypoints)
from .models import create_steps_model, register_twin
from .steps import StepPlan, Steps, plan_steps
from .weights import export_weights, load_model

__version__ = '0.1.0'
__all__ = [
    'StepPlan', 'Steps', 'plan_steps', 'create_steps_model', 'register_twin', 'export_weights', 'load_model',
    '__version__']
