"""Model families; importing this module registers every ``steps_*`` entrypoint with timm."""
from .steps_resnet import StepsResNet
from .steps_vit import StepsVisionTransformer

__all__ = ['StepsResNet', 'StepsVisionTransformer']
