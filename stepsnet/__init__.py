"""Step by Step Network (StepsNet, arXiv:2511.14329) for PyTorch and timm.

``import stepsnet`` registers every Steps model with timm, so ``timm.create_model('steps_resnet50')`` works;
``stepsnet.create_steps_model('resnet101')`` builds the Steps twin of any timm ResNet, ViT, Swin or ConvNeXt, and
``stepsnet.export_weights`` / ``stepsnet.load_model`` write and read weights in timm's ``local-dir:`` layout.

Importing the package itself loads neither torch nor timm, so that the ``stepsnet`` command answers ``--help`` at
once: the names below are imported on first use, and the Steps models are registered the moment timm is imported
(at once when it already is). Code that builds models by name imports timm first, so it always finds them.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = '0.1.0'
__all__ = [
    'StepPlan', 'Steps', 'plan_steps', 'create_steps_model', 'register_twin', 'export_weights', 'load_model',
    '__version__']

# public name -> the module that defines it (imported on first access, PEP 562)
_LAZY = {
    'StepPlan': 'stepsnet.steps', 'Steps': 'stepsnet.steps', 'plan_steps': 'stepsnet.steps',
    'create_steps_model': 'stepsnet.models', 'register_twin': 'stepsnet.models',
    'export_weights': 'stepsnet.weights', 'load_model': 'stepsnet.weights',
}


_SUBMODULES = ('analysis', 'cli', 'compare', 'config', 'data', 'engine', 'models', 'onnx', 'reports', 'stats', 'steps',
               'tasks', 'utils', 'weights')


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:  # ``import stepsnet; stepsnet.models...`` as with an eager package
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


class _Loader(importlib.abc.Loader):
    """timm's own loader, then the Steps entrypoints: they register themselves with timm's registry."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        spec = module.__spec__
        spec.loader = module.__loader__ = self._loader  # timm keeps its own loader (resources, reloads)
        self._loader.exec_module(module)
        importlib.import_module('stepsnet.models')

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _RegisterWithTimm(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when timm is first imported, wraps its loader so the Steps models follow it."""

    def find_spec(self, name, path=None, target=None):
        if name != 'timm':
            return None
        sys.meta_path.remove(self)  # once, and out of the way of the search below
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if 'timm' in sys.modules:
    importlib.import_module('stepsnet.models')
elif not any(isinstance(f, _RegisterWithTimm) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTimm())
