"""The ``ssl-studio`` command line's flags, and the run configuration they make (``config_from_args``).

Apart from ``cli.py`` so that whatever builds a run from flags (the benchmarks, the launcher's tests) reads
them without importing the commands that in turn run those benchmarks.
"""

from __future__ import annotations

import argparse
import functools
import math
from typing import Any

from ssl_studio.params import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_STATUS_HELP = """exit status (every command):
  0    success
  1    a run or evaluation that started and then failed (diverged, internal error, write error)
  2    a usage, configuration or data mistake; nothing was started, or a refused resume changed nothing
  130  interrupted by Ctrl-C or SIGTERM after saving a checkpoint; continue with 'ssl-studio resume RUN'"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, not a usage dump
        self.exit(EXIT_USAGE, f"ssl-studio: {message[0].upper()}{message[1:]}; see 'ssl-studio {self.prog.split()[-1]} --help'.\n"
                  if " " in self.prog else f"ssl-studio: {message}; see 'ssl-studio --help'.\n")


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (a time or an epoch count)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML run configuration or preset (flags override it)")
    p.add_argument("--preset", help="a preset name from resources/presets (e.g. simclr)")
    p.add_argument("--objective", help="simclr, supervised, ...")
    p.add_argument("--data", help="shapes, digits, folder:PATH, cifar:PATH or text:PATH (text:builtin)")
    p.add_argument("--backbone", help="convnet, resnet18 or vit")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-clock training budget")
    budget.add_argument("--epochs", type=float, help="budget in passes over the training images")
    budget.add_argument("--steps", type=int, help="budget in optimiser steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate per 256 images")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda or mps")
    p.add_argument("--precision", help="auto, float32 or bf16")
    p.add_argument("--out", help="folder under which the run folder is created (default runs)")
    p.add_argument("--name", help="a label added to the run folder's name")
    p.add_argument("--ablate", action="append", default=[], metavar="SWITCH", help="an ablation switch (repeatable), e.g. no_projector")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by its path, e.g. objective.temperature=0.5 or augment.crop_scale_min=0.08")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssl-studio", description="A desktop lab for visual self-supervised learning.",
                     epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=functools.partial(
        _Parser, epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    p_gui = sub.add_parser("gui", help="open the lab window (the default)")
    p_gui.add_argument("--runs", default="runs", help="the runs folder the browser watches")
    p_train = sub.add_parser("train", help="train one configuration headless")
    _add_run_flags(p_train)
    p_resume = sub.add_parser("resume", help="continue a run from its last checkpoint")
    p_resume.add_argument("run", help="the run folder")
    p_resume.add_argument("--quiet", action="store_true")
    p_eval = sub.add_parser("eval", help="evaluate a run's checkpoint")
    p_eval.add_argument("run", help="the run folder")
    p_eval.add_argument("--protocols", default=None,
                        help="comma-separated protocols: knn, linear, finetune, fractions (1%%, 10%%, 100%% of the labels), "
                             "zeroshot (CLIP runs), baselines (the backbone at initialisation and raw pixels), scratch (fine-tuning "
                             "the same backbone from initialisation, at --finetune-epochs), perplexity "
                             "(text runs); default knn,linear,finetune (text runs: perplexity,knn,linear)")
    p_eval.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where to evaluate (default auto)")
    p_eval.add_argument("--finetune-epochs", type=positive_number, default=3.0, help="fine-tuning epochs (default 3)")
    _add_ask_parser(sub)
    p_compare = sub.add_parser("compare", help="compare evaluated runs: a table per protocol, ranks, agreement")
    p_compare.add_argument("runs", nargs="+", help="run folders (evaluated with 'ssl-studio eval')")
    p_compare.add_argument("--csv", help="also write the table as CSV to this file")
    p_bench = sub.add_parser("bench", help="throughput benchmarks measured side by side in one run")
    p_bench.add_argument("--seconds", type=positive_number, default=3.0, help="time per measurement")
    p_bench.add_argument("--only", default="views,training,methods", help="comma-separated parts: views, training, methods (each "
                         "method's own step on its default backbone: SimCLR on the ConvNet, MAE and I-JEPA on the ViT, with the share of "
                         "each part), loop (a real 100-step SimCLR run: the share of the step, the host work and events, metrics writing, probes and "
                         "checkpoints), checkpoint, distributed (2 gloo processes against 1 process of 2 threads), gpu (needs CUDA)")
    p_bench.add_argument("--backbones", default="convnet,resnet18,vit")
    p_bench.add_argument("--gui", action="store_true", help="also measure the window: throughput with panels live, event-loop lateness, scatter redraw")
    p_bench.add_argument("--gui-seconds", type=positive_number, default=20.0, help="training time per side of the window benchmark")
    _add_study_parser(sub)
    return parser


# -- configuration from flags ------------------------------------------------------------

_FLAG_PATHS = {
    "objective": "objective.name", "data": "data.source", "backbone": "model.backbone", "batch_size": "batch_size",
    "lr": "optim.lr", "seed": "seed", "device": "device", "precision": "precision", "out": "out", "name": "name",
}


def _set_path(mapping: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = mapping
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            table = ".".join(parts[:i + 1])
            raise ConfigError(path, f"cannot be set: {table} is {child!r}, not a table of settings")
        node = child
    node[parts[-1]] = value


def split_setting(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of a --set flag as (setting path, TOML value), or a ConfigError saying how to write it."""
    if "=" not in item:
        raise ConfigError("--set", f"takes KEY=VALUE, e.g. objective.temperature=0.5, got {item!r}")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError("--set", f"needs a setting's path before '=', e.g. optim.lr=0.1, got {item!r}")
    return key, _parse_value(value.strip())


def _parse_value(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def config_from_args(args: argparse.Namespace):
    from ssl_studio.config import config_from_mapping, read_toml

    mapping: dict[str, Any] = {}
    source = args.config
    if args.preset:
        from ssl_studio.presets import preset_path

        source = preset_path(args.preset)
    if source:
        mapping = read_toml(source, "--preset" if args.preset else "--config")
        mapping.pop("preset", None)
    table = mapping.get("objective")
    if args.objective and table is not None and not isinstance(table, dict):
        mapping["objective"] = {"name": table}  # the flag replaces it; --objective alone would not say what was wrong
        table = mapping["objective"]
    if args.objective and isinstance(table, dict) and table.get("name") not in (None, args.objective):
        mapping["objective"] = {}  # another objective's parameters do not carry over
    for flag, path in _FLAG_PATHS.items():
        value = getattr(args, flag, None)
        if value is not None:
            _set_path(mapping, path, value)
    for budget in ("minutes", "epochs", "steps"):
        value = getattr(args, budget, None)
        if value is not None:
            mapping["budget"] = {budget: value}
    if args.ablate:
        mapping["ablations"] = sorted(set(mapping.get("ablations", [])) | set(args.ablate))
    for item in args.set:
        _set_path(mapping, *split_setting(item))
    return config_from_mapping(mapping)


def _add_ask_parser(sub) -> None:
    p = sub.add_parser("ask", help="put a prompt, or a sentence with [MASK], to a causal-LM and a masked-LM run",
                       usage="%(prog)s [options] RUN [RUN2] TEXT",
                       description="ssl-studio ask RUN [RUN2] TEXT: a prompt is continued by both models; a sentence with [MASK] "
                                   "gets the masked LM's fills with their probabilities and the causal LM's ranking of them. "
                                   "With one run, the newest finished run of the other text objective on the same data and "
                                   "vocabulary (next to it) answers too.")
    p.add_argument("items", nargs="+", metavar="RUN [RUN2] TEXT", help="one or two text run folders, then the text (quote it)")
    p.add_argument("--temperature", type=float, default=0.8, help="continuations: sampling temperature; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=20, help="continuations: sample from this many likeliest tokens (default 20)")
    p.add_argument("--tokens", type=int, default=16, help="continuations: how many tokens to add (default 16; fewer if the context is full)")
    p.add_argument("--fills", type=int, default=5, help="fills listed per [MASK] (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--alone", action="store_true", help="ask only the runs given (no partner run of the other objective)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"), help="where the models run (default cpu)")


def _add_study_parser(sub) -> None:
    p = sub.add_parser("study", help="several runs at matched budgets, summarised as a table and a figure")
    p.add_argument("kind", choices=["collapse", "protocols", "mae-vs-ijepa", "clip", "text", "recipes"],
                   help="collapse: every healthy/broken preset pair; protocols: every method evaluated by every protocol; "
                        "mae-vs-ijepa: MAE, I-JEPA and DINO on one ViT; clip: CLIP and SigLIP with held-out compositions; "
                        "text: causal LM vs masked LM from the same weights (--data text:builtin by default); "
                        "recipes: each method's lab recipe against its paper's recipe and the network at initialisation")
    p.add_argument("--data", default=None, help="shapes, digits, folder:PATH, cifar:PATH or text:PATH (default shapes; the text study: text:builtin)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes-per-run", type=float, default=3.0, help="wall-clock budget of each run (default 3)")
    budget.add_argument("--steps", type=int, help="an equal number of optimiser steps per run instead of minutes")
    p.add_argument("--pairs", help="comma-separated broken presets (or healthy ones, for all their twins); default all")
    p.add_argument("--methods", help="protocols and recipes studies: comma-separated objectives (default every one that needs no captions)")
    p.add_argument("--protocols", default="knn,linear,finetune,fractions", help="protocols study: which protocols")
    p.add_argument("--finetune-epochs", type=positive_number, default=3.0, help="protocols study: fine-tuning epochs")
    p.add_argument("--from", dest="reuse", default=None, metavar="STUDY",
                   help="protocols study: train nothing; evaluate the runs of this earlier study folder by the protocols "
                        "their reports lack, and write its tables again")
    p.add_argument("--held-out", help="clip study: comma-separated colour-shape pairs kept out of training (e.g. red-triangle)")
    p.add_argument("--out", default="runs/studies", help="folder under which the study folder is created")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every run, e.g. batch_size=128")
