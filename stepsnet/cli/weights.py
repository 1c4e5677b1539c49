"""``stepsnet export-weights``: a trained checkpoint as ``config.json`` + ``model.safetensors``, timm's layout."""
import argparse


def run(args: argparse.Namespace) -> int:
    from stepsnet.weights import export_weights
    out = export_weights(args.checkpoint, args.out, use_ema=args.ema, check=args.check, force=args.force)
    print(f'wrote {out}/config.json and {out}/model.safetensors; load them with '
          f"timm.create_model('local-dir:{out}', pretrained=True) after `import stepsnet`, or stepsnet.load_model")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'export-weights', help="write a trained checkpoint as config.json + model.safetensors (timm's local-dir)",
        description='Write the weights of a `stepsnet train` checkpoint in the layout timm and the Hugging Face Hub '
                    'read: config.json (architecture, num_classes, model arguments, class names, preprocessing, '
                    'paper id) and model.safetensors. The folder loads with '
                    "timm.create_model('local-dir:DIR', pretrained=True). Files are written under temporary names, "
                    'reloaded and compared with the checkpoint, then renamed into place.')
    p.add_argument('checkpoint', help='last.pth or best.pth written by `stepsnet train`')
    p.add_argument('--out', required=True, help='output folder (created if needed; refused when not empty)')
    p.add_argument('--force', action=argparse.BooleanOptionalAction, default=False,
                   help='write into a folder that is not empty, replacing its config.json and model.safetensors')
    p.add_argument('--ema', action=argparse.BooleanOptionalAction, default=False,
                   help="export the checkpoint's EMA weights")
    p.add_argument('--check', action=argparse.BooleanOptionalAction, default=True,
                   help='reload the written folder and compare its outputs with the checkpoint (default on)')
    p.set_defaults(func=run)
