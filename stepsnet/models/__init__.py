"""Model families; importing this module registers every ``steps_*`` entrypoint with timm."""
from .steps_convnext import StepsConvNeXt
from .steps_gpt import GPT, GPTConfig, create_lm
from .steps_resnet import StepsResNet
from .steps_swin import StepsSwinTransformer
from .steps_vit import StepsVisionTransformer

__all__ = [
    'StepsConvNeXt', 'StepsResNet', 'StepsSwinTransformer', 'StepsVisionTransformer', 'GPT', 'GPTConfig', 'create_lm']
