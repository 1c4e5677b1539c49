"""What ``save_pretrained`` adds to a Steps folder so it loads with no prior ``import stepsnet.hf``.

Steps-Llama writes :data:`AUTO_MAP` and ``steps_llama.py``; the Steps twins of other architectures
(:mod:`stepsnet.hf.steps_decoder`) write their own classes' entries and the same file as ``steps_decoder.py``.

transformers loads a ``model_type`` it does not know only as remote code: ``config.json`` names, in ``auto_map``, a
``file.Class`` per auto class, and ``from_pretrained(folder, trust_remote_code=True)`` imports that file from the
folder (the Hub's convention). :meth:`StepsLlamaConfig.save_pretrained`, which the model's ``save_pretrained``
calls, writes both: :data:`AUTO_MAP` into ``config.json`` and :mod:`stepsnet.hf.remote_code` as ``steps_llama.py``.

Why not transformers' ``register_for_auto_class`` with ``custom_object_save``: they copy the file that defines each
class, ``stepsnet/models/steps_llama.py``, which imports the rest of stepsnet (the trunk, the planner) and so is not
standalone either; run from the folder it would define a second set of classes (the loaded model would not be a
``stepsnet.hf.StepsLlamaForCausalLM``) from a frozen copy of one file beside the installed rest of the package, and
it would name one auto class per class (no ``AutoModel`` entry in a causal LM's folder). The file here imports the
installed classes instead. It is saved under the name ``custom_object_save`` gives (``steps_llama.py``, the defining
module's), so where transformers has registered the classes itself (it does for every class it loads as remote
code) its entries are the same and its copy of the module is replaced by this file.

``model.save_pretrained(..., push_to_hub=True)`` and ``push_to_hub`` upload the file; the config's own
``save_pretrained(..., push_to_hub=True)`` uploads before it is written.
"""
import os
import shutil
from pathlib import Path
from typing import Dict, Union

__all__ = ['AUTO_MAP', 'REMOTE_CODE_FILE', 'write_remote_code']

REMOTE_CODE_FILE = 'steps_llama.py'
_SOURCE = Path(__file__).with_name('remote_code.py')  # copied, never imported here
_MODULE = REMOTE_CODE_FILE[:-len('.py')]
AUTO_MAP: Dict[str, str] = {
    'AutoConfig': f'{_MODULE}.StepsLlamaConfig',
    'AutoModel': f'{_MODULE}.StepsLlamaModel',
    'AutoModelForCausalLM': f'{_MODULE}.StepsLlamaForCausalLM',
}


def write_remote_code(folder: Union[str, os.PathLike], name: str = REMOTE_CODE_FILE) -> Path:
    """Copy :mod:`stepsnet.hf.remote_code` into ``folder`` as ``name`` (``steps_llama.py``); returns the file written.

    The Steps twins of other architectures (:mod:`stepsnet.hf.steps_decoder`) save it as ``steps_decoder.py``, the
    name of the module that defines their classes; the file is the same, it imports whichever class is named.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    shutil.copyfile(_SOURCE, dest)
    return dest
