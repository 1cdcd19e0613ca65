"""The `tinyeval` command line: parse, call one function, render. No logic lives here.

Each area owns its commands in a light `commands.py` (heavy imports inside the function bodies, so
`tinyeval --help` stays fast) and is listed in `_AREA_COMMANDS`. A command whose module is not in the
tree yet is registered as a clear "not built yet" error with a non-zero exit.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Annotated, Optional

import typer

from tinyeval.console import DataRoot, JsonFlag, emit, err_console
from tinyeval.errors import TinyevalError

app = typer.Typer(
    name="tinyeval",
    help="Train and compare tiny adapters (TinyLoRA, LoRA-XS, LoRA, full) with GRPO/SFT, evaluate under "
    "lm-eval, and audit benchmarks for contamination.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def models(
    names: Annotated[Optional[list[str]], typer.Argument(help="Aliases, hub ids or paths (default: all aliases).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List registered models: source, parameters, layers, hidden size, local availability."""
    from tinyeval import models as registry

    rows = [registry.describe(name).row() for name in (names or list(registry.ALIASES))]
    emit(rows, "tinyeval models", as_json)


@app.command()
def data(
    names: Annotated[Optional[list[str]], typer.Argument(help="Datasets (default: all).")] = None,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """List datasets: split, rows, source (data-root file or hub) and a content hash of the rows."""
    from tinyeval import data as registry

    rows = registry.summary(names, data_root)
    emit(rows, "tinyeval data", as_json)


# Commands owned by each area's commands.py: (command name, "module:function", issue that builds it).
_AREA_COMMANDS = [
    ("plan", "tinyeval.adapters.commands:plan", "TinyLoRA adapters"),
    ("train", "tinyeval.train.commands:train", "GRPO / SFT trainers"),
    ("eval", "tinyeval.eval.commands:evaluate", "evaluation under lm-eval"),
    ("train-and-eval", "tinyeval.report.commands:train_and_eval", "train-and-eval matrix"),
    ("audit", "tinyeval.audit.commands:audit", "contamination audit"),
    ("perturb", "tinyeval.audit.commands:perturb", "GSM8K perturbation probes"),
    ("report", "tinyeval.report.commands:report", "reports"),
]


def _not_built(name: str, area: str):
    def command(args: Annotated[Optional[list[str]], typer.Argument(hidden=True)] = None) -> None:
        raise TinyevalError(f"`tinyeval {name}` is not built yet (planned: {area}); see README's status list")

    command.__doc__ = f"(not built yet: {area})"
    return command


def _register() -> None:
    for name, target, area in _AREA_COMMANDS:
        module_name, func = target.split(":")
        found = importlib.util.find_spec(module_name.rsplit(".", 1)[0]) is not None and \
            importlib.util.find_spec(module_name) is not None
        fn = getattr(importlib.import_module(module_name), func, None) if found else None
        app.command(name)(fn or _not_built(name, area))


_register()


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except TinyevalError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
