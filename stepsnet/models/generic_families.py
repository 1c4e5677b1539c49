"""The table of every timm family that :mod:`stepsnet.models.generic_twins` twins, and lookups in it.

The mechanism and its first families are in :mod:`~stepsnet.models.generic_twins`; more families are rows of the
same :class:`~stepsnet.models.generic_twins.TrunkFamily` in one module per group
(:mod:`~stepsnet.models._families_hierarchical`, :mod:`~stepsnet.models._families_isotropic`,
:mod:`~stepsnet.models._families_cnn`). This module joins them, so that the mechanism never imports its families
and a family module only imports the mechanism.
"""
from typing import List, Optional, Tuple

import timm

from stepsnet.models import _families_cnn, _families_hierarchical, _families_isotropic
from stepsnet.models.generic_twins import BASE_FAMILIES, TrunkFamily

__all__ = ['GENERIC_FAMILIES', 'family_of', 'family_configs']

GENERIC_FAMILIES: Tuple[TrunkFamily, ...] = (BASE_FAMILIES + _families_hierarchical.FAMILIES
                                             + _families_isotropic.FAMILIES + _families_cnn.FAMILIES)


def family_of(name: str) -> Optional[TrunkFamily]:
    """The generic family whose builder timm's entrypoint ``name`` calls, or None."""
    fn = timm.models.model_entrypoint(name)
    return next((f for f in GENERIC_FAMILIES if f.builder in fn.__code__.co_names), None)


def family_configs(family: TrunkFamily) -> List[str]:
    """Every timm model name built by the family's builder (its configurations), sorted."""
    return sorted(n for n in timm.list_models() if family.builder in timm.models.model_entrypoint(n).__code__.co_names)
