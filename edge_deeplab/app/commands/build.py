"""``edge-deeplab build``: save an (untrained) DeepLab model, optionally with backbone weights."""

from __future__ import annotations

from edge_deeplab.app.commands.common import add_model_arguments, model_config_from_args

HELP = "build a DeepLab v3+/MobileNet-v2 Keras model (.keras + .json config)"
DESCRIPTION = ("Builds DeepLab v3+ (or v3 with --no-decoder) on MobileNet-v2 and saves it as a "
               ".keras file with its config sidecar. Untrained unless --backbone-weights is given "
               "(imagenet downloads Keras' MobileNetV2 weights; a local .h5 path works offline).")


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output model path (.keras)")
    add_model_arguments(p)
    p.add_argument("--backbone-weights", default=None, metavar="imagenet|PATH.h5",
                   help="MobileNetV2 weights for the backbone, loaded by layer name")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out model (it may be a trained one)")


def run(args) -> int:
    from pathlib import Path

    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.core.outputs import Input, Output, check_outputs

    cfg = model_config_from_args(args)
    weights = None if args.backbone_weights in (None, "imagenet") else args.backbone_weights
    check_outputs([Output(args.out, "--out", suffixes=(".keras",))],
                  [Input(weights, "backbone weights")])
    if Path(args.out).exists() and not args.force:
        raise EdgeDeeplabError(f"--out {args.out} already exists (it may be a trained model); "
                               f"pass --force to replace it, or choose another path")
    from edge_deeplab.model.deeplab import build_model
    from edge_deeplab.model.model_io import save_model

    model = build_model(cfg, backbone_weights=args.backbone_weights)
    extra = {"backbone_weights": args.backbone_weights} if args.backbone_weights else {}
    path = save_model(model, args.out, cfg, **extra)
    print(f"saved {model.name} ({model.count_params():,} parameters, input "
          f"{cfg.input_size[0]}x{cfg.input_size[1]}, OS {cfg.output_stride}, alpha {cfg.alpha}, "
          f"{cfg.num_classes} classes) to {path}")
    return 0
