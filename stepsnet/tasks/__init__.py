"""The four tasks as library functions, one module each: language modelling (:mod:`.lm`), image classification
(:mod:`.classification`), detection (:mod:`.detection`) and segmentation (:mod:`.segmentation`). Each holds its
config, data, model, loss and evaluation; the loop and everything else they share is :mod:`stepsnet.engine`. No
task imports another."""
