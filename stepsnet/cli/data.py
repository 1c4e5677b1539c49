"""``stepsnet data``: prepare data sets once (text corpora -> token memmaps, synthetic COCO / ADE20K sets)."""
import argparse

from stepsnet.cli.common import int_list, non_negative_int, positive_int, probability
from stepsnet.utils.names import plural


def _run_prepare(args: argparse.Namespace) -> int:
    from stepsnet.data.text import prepare_text
    meta = prepare_text(
        args.out, inputs=args.inputs, train=args.train, val=args.val, test=args.test, tokenizer=args.tokenizer,
        tokenizer_file=args.tokenizer_file, vocab_file=args.vocab, merges_file=args.merges,
        vocab_size=args.vocab_size, val_fraction=args.val_fraction, max_bytes=args.max_bytes,
        encoding=args.encoding, errors=args.errors, force=args.force)
    tokens = ', '.join(f'{s} {n:,}' for s, n in meta['tokens'].items())
    print(f'{args.out}: {meta["source"]["kind"]} corpus, {meta["tokenizer"]["kind"]} tokenizer '
          f'({meta["vocab_size"]} ids); tokens: {tokens}')
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    """Write the shapes data set through the task table's writer of the layout (COCO 2017 or ADE20K) and say
    what it holds."""
    from stepsnet.data.synthetic import write_shapes
    s = write_shapes(args.task, args.out, args.size, args.num_train, args.num_val, args.max_shapes, args.seed,
                     args.force, size_name='--size')
    for split, v in s['splits'].items():
        where = v['ann_file'] if 'ann_file' in v else f'{v["image_dir"]}, {v["ann_dir"]}'
        extra = f', {plural(v["annotations"], "instance")}' if 'annotations' in v else ''
        print(f'{split}: {plural(v["images"], "image")}{extra} -> {where}')
    if 'categories' in s:
        print(f'categories: {", ".join(s["categories"])}')
    else:
        print(f'num_classes {s["num_classes"]} ({", ".join(s["classes"])}; label 0 is ignored)')
    return 0


def _add_synth_options(p: argparse.ArgumentParser, default_out: str, task: str) -> None:
    p.add_argument('--out', default=default_out, help=f'output folder (default {default_out})')
    p.add_argument('--num-train', type=positive_int, default=16, help='training images (default 16)')
    p.add_argument('--num-val', type=positive_int, default=8, help='validation images (default 8)')
    p.add_argument('--size', type=int_list, default=[96, 128], metavar='H,W',
                   help='nominal image height,width, each >= 32 (the short side varies, every third image is '
                        'turned; default 96,128)')
    p.add_argument('--max-shapes', type=positive_int, default=3, help='most shapes per image (default 3)')
    p.add_argument('--seed', type=non_negative_int, default=0)
    p.add_argument('--force', action=argparse.BooleanOptionalAction, default=False,
                   help='replace the files of an existing data set in --out (default: refuse)')
    p.set_defaults(func=_run_synth, task=task)


def _add_mnist1d(group: argparse._SubParsersAction) -> None:
    """``stepsnet data mnist1d``: generate MNIST-1D into its cache once (the parser and its runner in one place)."""

    def run(args: argparse.Namespace) -> int:
        from stepsnet.data.mnist1d import load_mnist1d
        arrays, path, generated = load_mnist1d(args.num_samples, args.seed, args.cache_dir, regenerate=args.force)
        print(f'mnist1d ({args.num_samples} signals, seed {args.seed}): {len(arrays["y"]):,} train / '
              f'{len(arrays["y_test"]):,} val (test) signals of {arrays["x"].shape[1]} samples, 10 classes -> '
              f'{path} ({"generated" if generated else "already cached"})')
        return 0

    p = group.add_parser(
        'mnist1d', help='generate MNIST-1D (never downloaded) into its cache',
        description='Generate MNIST-1D (Greydanus & Kobak, arXiv:2011.14439) with the mnist1d package from its seed '
                    'and cache the arrays; the default is the standard 4,000 train / 1,000 test split. The '
                    'classification task reads the same cache (dataset: mnist1d; data_dir: the cache folder).')
    p.add_argument('--num-samples', type=positive_int, default=5000,
                   help='signals in all, a multiple of 10, split 80/20 (default 5000: the standard set; any other '
                        'number is another data set, not comparable with the published results)')
    p.add_argument('--seed', type=non_negative_int, default=42, help='generator seed (default 42: the standard set)')
    p.add_argument('--cache-dir', default=None,
                   help='cache folder (default $STEPSNET_CACHE/mnist1d, else ~/.cache/stepsnet/mnist1d)')
    p.add_argument('--force', action=argparse.BooleanOptionalAction, default=False,
                   help='generate again and overwrite the cached file (default: use it)')
    p.set_defaults(func=run)


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser('data', help='prepare data sets', description='Prepare data sets once for training.')
    group = data.add_subparsers(dest='data_command', metavar='DATA_COMMAND')
    group.required = True

    p = group.add_parser(
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
    p.add_argument('--vocab-size', type=positive_int, default=None,
                   help='vocabulary of a BPE trained on the corpus (with --tokenizer bpe; default 8192)')
    p.add_argument('--val-fraction', type=probability, default=0.05, help='held-out share (default 0.05)')
    p.add_argument('--max-bytes', type=positive_int, default=None, help='cap on the embedded corpus size (bytes)')
    p.add_argument('--encoding', default='utf-8', help='text encoding of the inputs (default utf-8; e.g. latin-1)')
    p.add_argument('--errors', choices=('strict', 'replace', 'ignore', 'backslashreplace'), default='strict',
                   help='what to do with bytes the encoding cannot decode (default strict: an error naming the '
                        'file and byte offset)')
    p.add_argument('--force', action=argparse.BooleanOptionalAction, default=False,
                   help='replace prepared data already in --out (default: refuse)')
    p.set_defaults(func=_run_prepare)

    p = group.add_parser(
        'synth-coco', help='write a small synthetic COCO instance data set (shapes with masks)',
        description='Coloured shapes with exact polygon masks in the COCO 2017 layout that dry runs read (the '
                    'same writer): <out>/{train2017,val2017}/ and <out>/annotations/instances_{train2017,val2017}'
                    '.json, with the categories rectangle, ellipse, triangle. Runs detection end to end offline.')
    _add_synth_options(p, 'runs/data/synth-coco', 'det')
    p = group.add_parser(
        'synth-ade', help='write a small synthetic ADE20K-format segmentation data set',
        description='Coloured shapes in the ADE20K layout that dry runs read (the same writer): '
                    '<out>/images/{training,validation}/*.jpg and <out>/annotations/{training,validation}/*.png; '
                    '4 classes (background + 3 shapes), label 0 (shape outlines, a few stray pixels) ignored. Runs '
                    'segmentation end to end offline (num_classes: 4).')
    _add_synth_options(p, 'runs/data/synth-ade', 'seg')
    _add_mnist1d(group)
