"""Remote code of a saved Steps folder: ``save_pretrained`` copies this file there, as ``steps_llama.py`` for a
Steps-Llama and as ``steps_decoder.py`` for the Steps twin of another architecture (``StepsTwinQwen3ForCausalLM``, ...).

``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` (or ``AutoModel`` / ``AutoConfig``) imports
this file from the folder, as the ``auto_map`` of its ``config.json`` says, because transformers does not know
``model_type='steps_llama'`` or ``'steps_twin_*'`` by itself. It holds no model code: it takes the classes from the
installed ``stepsnet`` package (``pip install stepsnet``), the code ``import stepsnet.hf`` gives, so a folder loads
with the same classes either way and never runs an older copy of the model beside a newer package.
"""
# transformers checks that a remote file's imports are installed, but skips those in a try block: the message below
# is the one a user without stepsnet sees
try:
    from stepsnet.hf import StepsLlamaConfig, StepsLlamaForCausalLM, StepsLlamaModel
    from stepsnet.hf import steps_decoder as _twins
except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] != 'stepsnet':
        raise
    raise ImportError(f'this Steps checkpoint runs the model code of the stepsnet package, which is not '
                      f'installed (no module {e.name!r}): pip install stepsnet') from None

__all__ = ['StepsLlamaConfig', 'StepsLlamaModel', 'StepsLlamaForCausalLM']


def __getattr__(name):
    """The twin classes the ``auto_map`` names (``StepsTwinGemma2Config``, ...): :mod:`stepsnet.hf.steps_decoder`'s."""
    return getattr(_twins, name)
