"""``splitedge-train``: reproduce the model zoo's entries from their recorded recipes.

Each recipe module contributes one sub-command through ``add_parser(subparsers)``;
its defaults are the recipe that made the committed checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from splitedge.models.zoo import ZooError

# Recipe modules; each exposes add_parser(subparsers) registering its sub-command(s).
RECIPE_MODULES = (
    "splitedge.training.depth_prior",
    "splitedge.training.train_teacher",
    "splitedge.training.eval_zoo",
    "splitedge.training.distill",
    "splitedge.training.distill_seg",
    "splitedge.training.prefilter_train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitedge-train",
        description="Train splitedge models on the project's own synthetic data; "
        "each sub-command's defaults reproduce the committed checkpoint.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="RECIPE")
    for name in RECIPE_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ZooError) as exc:
        print(f"splitedge-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
