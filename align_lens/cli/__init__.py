"""`align-lens` command line: each pipeline step as a sub-command (see `align-lens COMMAND --help`).

    align-lens pretrain --model MODEL --hook HOOK --texts corpus.txt --d-sae 4096 --out stage1/
    align-lens align    --model MODEL --sae stage1/ --ontology concepts.jsonl --out aligned/
    align-lens eval     --model MODEL --sae aligned/ --stage1 stage1/ --ontology concepts.jsonl --out eval/
    align-lens publish  aligned/ you/my-alignsae --sae-id HOOK --dry-run

MODEL is a folder saved by `align_lens.save_transformer` or a TransformerLens model name (e.g. gpt2); `--world
bio` in its place chooses the shipped tiny model and its synthetic world. Every
command takes --device (cpu, cuda, cuda:N, mps; checked before any work) and --debug (full traceback).
Errors are one line naming the fix; exit status 2 for usage errors, 1 for failures.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from align_lens.cli.options import Parser, UsageError, common_options

# Mistakes in what the user passed (options, files, ontology contents): exit status 2.
USAGE_ERRORS = (UsageError, ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    from align_lens.cli.pipeline import add_align, add_eval, add_pretrain
    from align_lens.cli.publish import add_publish
    from align_lens.cli.two_hop import add_grokking, add_train_two_hop, add_two_hop_study
    from align_lens.cli.world import add_demo, add_train_base

    p = Parser(prog="align-lens", description="Concept-aligned SAEs (AlignSAE) for SAELens.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    pipeline = (add_demo, add_train_base, add_pretrain, add_align, add_eval, add_publish)
    for add in (*pipeline, add_train_two_hop, add_two_hop_study, add_grokking):
        add(sub, common)
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
    run = args.run
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
