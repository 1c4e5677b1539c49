"""The configs of the four tasks' runs, one dataclass each (the keys of the YAML recipes in ``configs/`` and the
flags of the training commands), and :class:`RunConfig`, the fields they share.

These modules load neither torch nor timm, so that ``stepsnet COMMAND --help`` and a bad flag answer at once; the
task modules (:mod:`stepsnet.tasks`) train from them and export them under their own names too.
"""
from stepsnet.config.classification import ClassificationConfig
from stepsnet.config.detection import DetectionConfig
from stepsnet.config.lm import LMConfig
from stepsnet.config.run import RunConfig
from stepsnet.config.segmentation import SegmentationConfig

__all__ = ['RunConfig', 'ClassificationConfig', 'DetectionConfig', 'SegmentationConfig', 'LMConfig']
