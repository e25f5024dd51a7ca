"""`align-lens` command line: each pipeline step as a sub-command (see `align-lens COMMAND --help`).

    align-lens pretrain --model MODEL --hook HOOK --texts corpus.txt --d-sae 4096 --out stage1/
    align-lens align    --model MODEL --sae stage1/ --ontology concepts.jsonl --out aligned/
    align-lens eval     --model MODEL --sae aligned/ --stage1 stage1/ --ontology concepts.jsonl --out eval/
    align-lens publish  aligned/ you/my-alignsae --sae-id HOOK --dry-run

MODEL is a folder saved by `align_lens.save_model` or a TransformerLens model name (e.g. gpt2). Every
command takes --device (cpu, cuda, cuda:N, mps; checked before any work) and --debug (full traceback).
Errors are one line naming the fix; exit status 2 for usage errors, 1 for failures.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from align_lens.cli.options import Parser, UsageError, common_options, device

# Mistakes in what the user passed (options, files, ontology contents): exit status 2.
USAGE_ERRORS = (UsageError, ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    from align_lens.cli.pipeline import add_align, add_eval, add_pretrain
    from align_lens.cli.publish import add_publish
    from align_lens.cli.world import add_demo, add_train_base
    from align_lens.worlds.two_hop_cli import add_two_hop_commands

    p = Parser(prog="align-lens", description="Concept-aligned SAEs (AlignSAE) for SAELens.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for add in (add_demo, add_train_base, add_pretrain, add_align, add_eval, add_publish):
        add(sub, common)
    ours = set(sub.choices)
    add_two_hop_commands(sub)  # the two-hop world's commands (align_lens/worlds/two_hop_cli.py)
    for name, parser in sub.choices.items():
        if name not in ours and "debug" not in {a.dest for a in parser._actions}:
            parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def _message(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"align-lens: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"align-lens {args.command}"
    if isinstance(getattr(args, "device", None), str):  # commands added without the checked --device type
        try:
            device(args.device)
        except argparse.ArgumentTypeError as err:
            parser.exit(2, f"{prog}: error: argument --device: {err}\n")
    run = getattr(args, "run", None) or args.func
    with warnings.catch_warnings():
        warnings.showwarning = _warn_one_line
        try:
            return run(args)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            if getattr(args, "debug", False):
                raise
            usage = isinstance(err, USAGE_ERRORS)
            hint = "" if usage else f" ({type(err).__name__}; rerun with --debug for the traceback)"
            print(f"{prog}: error: {_message(err)}{hint}", file=sys.stderr)
            return 2 if usage else 1
