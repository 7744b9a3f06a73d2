"""argparse value types shared by several subcommands (standard library only: keeps --help fast)."""

from __future__ import annotations

import argparse


def positive(kind: type):
    """An argparse `type` that accepts a number of `kind` greater than zero, with a clear message."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"expected a {noun}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse
