"""Model families; importing this module registers every ``steps_*`` entrypoint with timm."""
from .generic_twins import TimmSteps
from .steps_1d import StepsResNet1d
from .steps_convnext import StepsConvNeXt
from .steps_gpt import GPT, GPTConfig, create_lm
from .steps_resnet import StepsResNet
from .steps_swin import StepsSwinTransformer
from .steps_vit import StepsVisionTransformer
from .twins import create_steps_model, register_twin

__all__ = [
    'StepsConvNeXt', 'StepsResNet', 'StepsResNet1d', 'StepsSwinTransformer', 'StepsVisionTransformer', 'GPT',
    'GPTConfig', 'create_lm', 'create_steps_model', 'register_twin', 'TimmSteps']
