"""Remote code of a saved Steps-Llama folder: ``save_pretrained`` copies this file there as ``steps_llama.py``.

``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` (or ``AutoModel`` / ``AutoConfig``) imports
this file from the folder, as the ``auto_map`` of its ``config.json`` says, because transformers does not know
``model_type='steps_llama'`` by itself. It holds no model code: it takes the Steps-Llama classes from the installed
``stepsnet`` package (``pip install stepsnet``), the code ``import stepsnet.hf`` gives, so a folder loads with the
same classes either way and never runs an older copy of the model beside a newer package.
"""
# transformers checks that a remote file's imports are installed, but skips those in a try block: the message below
# is the one a user without stepsnet sees
try:
    from stepsnet.hf import StepsLlamaConfig, StepsLlamaForCausalLM, StepsLlamaModel
except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] != 'stepsnet':
        raise
    raise ImportError(f'this Steps-Llama checkpoint runs the model code of the stepsnet package, which is not '
                      f'installed (no module {e.name!r}): pip install stepsnet') from None

__all__ = ['StepsLlamaConfig', 'StepsLlamaModel', 'StepsLlamaForCausalLM']
