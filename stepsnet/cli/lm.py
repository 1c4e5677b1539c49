"""``stepsnet train-lm``, ``eval-lm`` and ``sample``: language modelling, argument parsing only."""
import argparse
import json

from stepsnet.cli.common import (
    add_config_flags,
    config_from_flags,
    integer,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from stepsnet.utils.names import plural
from stepsnet.utils.tasks import TASKS

CONFIG = TASKS['lm'].config


def _run_train(args: argparse.Namespace) -> int:
    cfg = config_from_flags(args, CONFIG)
    from stepsnet.tasks.lm import train_lm
    summary = train_lm(cfg)
    if cfg.dry_run:
        return 0
    f = summary['final']
    result = (f'val loss {f["loss"]:.4f}, ppl {f["ppl"]:.3f}, bits/byte {f["bpb"]:.4f} ({f["tokens"]:,} validation '
              'tokens)') if f else 'no final evaluation (final_eval_windows is 0)'
    print(f'{cfg.model}: {plural(summary["iters"], "step")}, {summary["tokens_seen"]:,} tokens; {result}; '
          f'checkpoint {summary["checkpoint"]}')
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from stepsnet.tasks.lm import evaluate_lm_checkpoint
    r = evaluate_lm_checkpoint(args.checkpoint, data_dir=args.data_dir, split=args.split, windows=args.windows,
                               batch_size=args.batch_size, device=args.device, amp=args.amp, out=args.out)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f'{r["model"]} on {r["data_dir"]}/{r["split"]}: loss {r["loss"]:.4f}  ppl {r["ppl"]:.3f}  bits/byte '
              f'{r["bpb"]:.4f}  ({r["tokens"]:,} tokens in {plural(r["windows"], "window")} of {r["block_size"]})')
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'train-lm', help='train a (Steps) GPT language model',
        description='Train a language model from a YAML config (configs/lm/*.yaml) with command-line overrides. '
                    'Launch with torchrun for DDP (same command).')
    p.add_argument('--config', '-c', help='YAML file of LMConfig fields')
    add_config_flags(p, CONFIG)
    p.set_defaults(func=_run_train, trains=True)

    p = sub.add_parser(
        'eval-lm', help='validation loss, perplexity and bits per byte of a language-model checkpoint',
        description='Score a train-lm checkpoint on non-overlapping windows of a split, by default as the run\'s '
                    'final evaluation did (its data, context, number of windows and batch size).')
    p.add_argument('--checkpoint', required=True, help='last.pth / best.pth written by train-lm')
    p.add_argument('--data-dir', help='prepared token data (default: the run\'s); the run\'s tokenizer')
    p.add_argument('--split', default='val', choices=('val', 'test', 'train'))
    p.add_argument('--windows', type=positive_int, help='windows scored (default: the run\'s final_eval_windows)')
    p.add_argument('--batch-size', type=positive_int, help='windows per forward pass (default: the run\'s)')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda')
    p.add_argument('--amp', action=argparse.BooleanOptionalAction, default=None,
                   help='autocast (default: as the run trained)')
    p.add_argument('--out', help='write the result as JSON here')
    p.add_argument('--json', action=argparse.BooleanOptionalAction, default=False, help='print the result as JSON')
    p.set_defaults(func=_run_eval)

    p = sub.add_parser('sample', help='generate text from a language-model checkpoint')
    p.add_argument('--checkpoint', required=True, help='last.pth / best.pth written by train-lm')
    p.add_argument('--prompt', default='\n')
    p.add_argument('--max-new-tokens', type=positive_int, default=200)
    p.add_argument('--num-samples', type=positive_int, default=1)
    p.add_argument('--temperature', type=non_negative_float, default=0.8, help='0 samples greedily')
    p.add_argument('--top-k', type=non_negative_int, default=50, help='0 disables top-k')
    p.add_argument('--seed', type=integer, default=0)
    p.add_argument('--device', default='cpu', help='cpu, cuda, auto')
    p.set_defaults(func=_run_sample)
