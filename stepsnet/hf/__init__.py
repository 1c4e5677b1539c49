"""StepsNet in Hugging Face transformers (the optional ``stepsnet[hf]`` extra).

Importing this package registers the Steps-Llama model with transformers' auto classes, so that
``AutoConfig.for_model('steps_llama', ...)``, ``AutoModelForCausalLM.from_config(...)`` and
``AutoModelForCausalLM.from_pretrained(folder)`` of a saved Steps-Llama work::

    import stepsnet.hf
    from transformers import AutoModelForCausalLM, LlamaConfig

    twin = stepsnet.hf.steps_twin_config(LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                                     num_attention_heads=4, vocab_size=1000))
    model = AutoModelForCausalLM.from_config(twin)

``save_pretrained`` also writes the Hub's remote-code entries (``auto_map`` and a ``steps_llama.py`` that imports
these classes, :mod:`stepsnet.hf.saving`), so a saved folder loads in a process that never imported stepsnet with
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``, wherever stepsnet is installed.

``import stepsnet`` alone never imports transformers.
"""
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from stepsnet.models.steps_llama import (
    StepsLlamaConfig,
    StepsLlamaForCausalLM,
    StepsLlamaModel,
    step_intermediate_size,
    step_kv_heads,
    steps_twin_config,
)

from .twins import REAL_SHAPES, format_parity_table, parity_table

__all__ = ['StepsLlamaConfig', 'StepsLlamaModel', 'StepsLlamaForCausalLM', 'steps_twin_config', 'step_kv_heads',
           'step_intermediate_size', 'REAL_SHAPES', 'parity_table', 'format_parity_table']

AutoConfig.register(StepsLlamaConfig.model_type, StepsLlamaConfig, exist_ok=True)
AutoModel.register(StepsLlamaConfig, StepsLlamaModel, exist_ok=True)
AutoModelForCausalLM.register(StepsLlamaConfig, StepsLlamaForCausalLM, exist_ok=True)
