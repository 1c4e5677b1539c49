"""Model families; importing this module registers every ``steps_*`` entrypoint with timm."""
from .steps_convnext import StepsConvNeXt  # noqa: F401
from .steps_resnet import StepsResNet
from .steps_swin import StepsSwinTransformer  # noqa: F401
from .steps_vit import StepsVisionTransformer

__all__ = ['StepsResNet', 'StepsVisionTransformer']
