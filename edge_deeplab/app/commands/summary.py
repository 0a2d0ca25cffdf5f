"""``edge-deeplab summary``: parameters, multiply-adds, shapes and receptive field of a model."""

from __future__ import annotations

from edge_deeplab.app.commands.common import add_model_arguments, model_config_from_args

HELP = "print parameters, multiply-adds, feature/ASPP shapes and receptive field"
DESCRIPTION = ("Summarises the architecture given by the model flags (or a saved --model): "
               "parameters, multiply-adds (conv/depthwise/dense, BatchNorm folded; bilinear "
               "upsampling reported separately), output stride, per-stage feature shapes, ASPP "
               "branch shapes and the theoretical receptive field.")


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--model", default=None, metavar="M.keras|RUN",
                   help="summarise a saved model (its config sidecar) instead of the flags")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    import json

    from edge_deeplab.model.summary import format_summary, summarize

    if args.model:
        from edge_deeplab.core.errors import EdgeDeeplabError
        from edge_deeplab.model.model_io import load_model

        model, cfg, _ = load_model(args.model)
        if cfg is None:
            raise EdgeDeeplabError(f"{args.model} has no edge_deeplab config sidecar (.json)")
        s = summarize(cfg, model=model)
    else:
        s = summarize(model_config_from_args(args))
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_summary(s))
    return 0
