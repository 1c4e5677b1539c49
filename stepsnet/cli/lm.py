"""``stepsnet data prepare-text``, ``train-lm``, ``sample`` and ``compare``: argument parsing only."""
import argparse
import dataclasses
import importlib
import sys
import typing
from typing import Any, Dict, List

import yaml

from stepsnet.tasks import COMPARE_TASKS


def _run_prepare(args: argparse.Namespace) -> int:
    from stepsnet.data.text import prepare_text
    meta = prepare_text(
        args.out, inputs=args.inputs, train=args.train, val=args.val, test=args.test, tokenizer=args.tokenizer,
        tokenizer_file=args.tokenizer_file, vocab_file=args.vocab, merges_file=args.merges,
        vocab_size=args.vocab_size, val_fraction=args.val_fraction, max_bytes=args.max_bytes)
    tokens = ', '.join(f'{s} {n:,}' for s, n in meta['tokens'].items())
    print(f'{args.out}: {meta["source"]["kind"]} corpus, {meta["tokenizer"]["kind"]} tokenizer '
          f'({meta["vocab_size"]} ids); tokens: {tokens}')
    return 0


def _key_value(text: str) -> tuple:
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'expected KEY=VALUE, got {text!r}')
    key, value = text.split('=', 1)
    return key.strip(), yaml.safe_load(value)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _field_type(tp: Any):
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    return {int: int, float: float, bool: _bool, str: str}.get(tp)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from stepsnet.tasks.lm import TrainConfig
    hints = typing.get_type_hints(TrainConfig)
    g = p.add_argument_group('training options (override the config file)')
    for f in dataclasses.fields(TrainConfig):
        conv = _field_type(hints[f.name])
        if conv is None:
            continue
        g.add_argument('--' + f.name.replace('_', '-'), dest=f.name, type=conv, default=None, metavar=f.name.upper(),
                       help=f'default {f.default!r}' if f.default is not dataclasses.MISSING else None)


def _run_train(args: argparse.Namespace) -> int:
    from stepsnet.tasks.lm import TrainConfig, load_train_config, train_lm
    overrides: Dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                                 if getattr(args, f.name, None) is not None}
    if args.model_arg:
        base = load_train_config(args.config).model_args if args.config else {}
        overrides['model_args'] = {**base, **dict(args.model_arg)}
    cfg = load_train_config(args.config, **overrides)
    try:
        summary = train_lm(cfg)
    except FloatingPointError as e:
        print(f'stepsnet train-lm: stopped: {e}', file=sys.stderr)
        return 3
    if summary['final']:
        f = summary['final']
        print(f'{cfg.model}: {summary["iters"]} steps, {summary["tokens_seen"]:,} tokens, val loss {f["loss"]:.4f}, '
              f'ppl {f["ppl"]:.3f}, bits/byte {f["bpb"]:.4f}; checkpoint {summary["checkpoint"]}')
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    from stepsnet.tasks.lm import sample_lm
    texts = sample_lm(args.checkpoint, prompt=args.prompt, max_new_tokens=args.max_new_tokens,
                      num_samples=args.num_samples, temperature=args.temperature, top_k=args.top_k or None,
                      seed=args.seed, device=args.device)
    for i, t in enumerate(texts):
        if len(texts) > 1:
            print(f'--- sample {i + 1} ---')
        print(t)
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    module = importlib.import_module(COMPARE_TASKS[args.task])
    try:
        module.compare_from_args(args)
    except FloatingPointError as e:
        print(f'stepsnet compare: stopped: {e}', file=sys.stderr)
        return 3
    return 0


def _seeds(text: str) -> List[int]:
    """``3`` means seeds 0, 1, 2; ``1,5,9`` lists them."""
    try:
        if ',' in text:
            return [int(s) for s in text.split(',') if s.strip()]
        n = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f'expected a count (3) or a list of seeds (0,1,2), got {text!r}') from e
    if n < 1:
        raise argparse.ArgumentTypeError(f'expected at least one seed, got {text!r}')
    return list(range(n))


def register(sub: argparse._SubParsersAction) -> None:
    # data prepare-text
    data = sub.add_parser('data', help='prepare datasets', description='Prepare datasets once for training.')
    data_sub = data.add_subparsers(dest='data_command', metavar='DATA_COMMAND')
    data_sub.required = True
    p = data_sub.add_parser(
        'prepare-text', help='text files or folders -> uint16 token memmaps',
        description='Tokenize a corpus into train.bin / val.bin (/ test.bin) and meta.json. Without inputs, the '
                    'embedded corpus (the Python standard library sources) is used. A folder holding '
                    'wiki.train.raw / wiki.valid.raw / wiki.test.raw is read as WikiText-103 splits.')
    p.add_argument('inputs', nargs='*', help='text files or folders (split into train/val by file)')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--train', help='explicit training file')
    p.add_argument('--val', help='explicit validation file')
    p.add_argument('--test', help='explicit test file')
    p.add_argument('--tokenizer', choices=('byte', 'bpe'), default='byte', help='default byte (256 ids)')
    p.add_argument('--tokenizer-file', help='Hugging Face tokenizers JSON (with --tokenizer bpe)')
    p.add_argument('--vocab', help='GPT-2 vocab.json (with --merges and --tokenizer bpe)')
    p.add_argument('--merges', help='GPT-2 merges.txt')
    p.add_argument('--vocab-size', type=int, default=8192, help='vocabulary of a BPE trained on the corpus')
    p.add_argument('--val-fraction', type=float, default=0.05, help='held-out share (default 0.05)')
    p.add_argument('--max-bytes', type=int, default=None, help='cap on the embedded corpus size (characters)')
    p.set_defaults(func=_run_prepare)

    # train-lm
    p = sub.add_parser(
        'train-lm', help='train a (Steps) GPT language model',
        description='Train a language model from a YAML config (configs/lm/*.yaml) with command-line overrides. '
                    'Launch with torchrun for DDP (same command).')
    p.add_argument('--config', help='YAML file of training options')
    p.add_argument('--model-arg', action='append', type=_key_value, metavar='KEY=VALUE',
                   help='override a model config field, e.g. --model-arg dropout=0.1 (repeatable)')
    _add_train_options(p)
    p.set_defaults(func=_run_train)

    # sample
    p = sub.add_parser('sample', help='generate text from a language-model checkpoint')
    p.add_argument('--checkpoint', required=True, help='ckpt.pt written by train-lm')
    p.add_argument('--prompt', default='\n')
    p.add_argument('--max-new-tokens', type=int, default=200)
    p.add_argument('--num-samples', type=int, default=1)
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--top-k', type=int, default=50, help='0 disables top-k')
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--device', default='cpu')
    p.set_defaults(func=_run_sample)

    # compare
    p = sub.add_parser(
        'compare', help='train a residual model and its Steps version at equal parameters; report',
        description='Train the baseline and the Steps model with the same data and budget, then print a table and '
                    'write report.md, results.json and a loss-curve PNG into --out.')
    p.add_argument('--task', choices=sorted(COMPARE_TASKS), default='lm', help='default lm')
    p.add_argument('--out', default='runs/compare', help='output folder (default runs/compare)')
    p.add_argument('--minutes', type=float, default=3.5,
                   help='training budget per model and seed, evaluation excluded (default 3.5)')
    p.add_argument('--seeds', type=_seeds, default=[0], help='a count (3 -> 0,1,2) or a list (0,1,2); default 0')
    p.add_argument('--config', default=None, help='training config YAML (default: the task\'s CPU config)')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    for name in sorted(COMPARE_TASKS):
        importlib.import_module(COMPARE_TASKS[name]).compare_add_arguments(p)
    p.set_defaults(func=_run_compare)

