"""The class names of a labelled data set, in label order: one mixin for every data set of the package."""
from typing import List

__all__ = ['ClassNames']


class ClassNames:
    """``num_classes`` and ``class_names`` of a labelled data set, from the ``classes`` list it sets: every data set
    here, and the detection data (:class:`stepsnet.data.coco.CocoInstances`, whose labels start at 1)."""
    classes: List[str]
    first_label: int = 0  # the label of classes[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> List[str]:
        """The class names in label order (label ``first_label + i`` is ``class_names[i]``)."""
        return list(self.classes)
