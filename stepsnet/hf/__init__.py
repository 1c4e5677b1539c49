"""StepsNet in Hugging Face transformers (the optional ``stepsnet[hf]`` extra).

Two kinds of model, both registered with transformers' auto classes on import:

* the Steps twin of a decoder-only architecture of transformers (:mod:`stepsnet.hf.steps_decoder`): the host's own
  decoder layers, norms, rotary embedding, masks and head, the trunk a Step by Step plan of them.
  :func:`steps_twin_config` derives it from the host's config; :data:`DECODERS` lists the families it is tested on
  (Llama, Qwen2, Qwen3, Mistral, Mixtral, Qwen2-MoE, Qwen3-MoE, Gemma, Gemma 2, Gemma 3, Phi-3, OLMo 2, GPT-NeoX,
  Granite, ...)::

      import stepsnet.hf
      from transformers import AutoModelForCausalLM, Gemma2Config

      host = Gemma2Config(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=64, vocab_size=1000)
      model = AutoModelForCausalLM.from_config(stepsnet.hf.steps_twin_config(host))   # StepsTwinGemma2ForCausalLM

* Steps-Llama (:mod:`stepsnet.models.steps_llama`, ``model_type='steps_llama'``), the training task's Llama with the
  planner's heads; :func:`steps_llama_twin_config` derives it from a Llama, Mistral or Qwen2 config.

``save_pretrained`` of either also writes the Hub's remote-code entries (``auto_map`` and a small file that imports
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
    steps_llama_twin_config,
)

from . import steps_decoder
from .steps_decoder import DECODERS, NOT_COVERED, is_steps_twin, steps_twin_config, twin_classes, twin_plan
from .twins import REAL_SHAPES, format_parity_table, parity_table

__all__ = ['steps_twin_config', 'twin_classes', 'twin_plan', 'is_steps_twin', 'DECODERS', 'NOT_COVERED',
           'StepsLlamaConfig', 'StepsLlamaModel', 'StepsLlamaForCausalLM', 'steps_llama_twin_config', 'step_kv_heads',
           'step_intermediate_size', 'REAL_SHAPES', 'parity_table', 'format_parity_table', 'steps_decoder']

AutoConfig.register(StepsLlamaConfig.model_type, StepsLlamaConfig, exist_ok=True)
AutoModel.register(StepsLlamaConfig, StepsLlamaModel, exist_ok=True)
AutoModelForCausalLM.register(StepsLlamaConfig, StepsLlamaForCausalLM, exist_ok=True)
