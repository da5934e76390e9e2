"""``ssl-studio ask RUN [RUN2] TEXT``: the Text panel's Ask box, headless.

A prompt is continued by a causal and a masked LM run; a sentence with ``[MASK]`` gets the masked
LM's fills and the causal LM's ranking of them (``engine/text_answers.py`` says how).  Given one
run, the newest finished run of the other text objective on the same data and vocabulary, in the
same runs folder, answers beside it (``engine/text_partners.py``).  Every refusal is one sentence
(exit 2, through ``cli.main``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ssl_studio.params import ConfigError


def _split_items(items: list[str]) -> tuple[list[str], str]:
    if len(items) < 2:
        raise ConfigError("", "ssl-studio ask takes a text run's folder and then the text, e.g. "
                              "ssl-studio ask runs/RUN \"The socket module\" (or a sentence with [MASK]).")
    if len(items) > 3:
        raise ConfigError("", f"ssl-studio ask takes one or two run folders and then one text, got {len(items)} arguments; "
                              "quote the text so that it is one argument.")
    *runs, text = items
    try:
        is_run = len(text) < 4096 and (Path(text) / "config.toml").is_file()
    except (OSError, ValueError):  # a long or odd text is not a path
        is_run = False
    if is_run:
        raise ConfigError("", f"The last argument ({text}) is a run folder, but it should be the text to ask; put the text last, quoted.")
    return runs, text


def ask(args) -> int:
    from ssl_studio.engine.text_answers import AskSettings, answer, answer_lines
    from ssl_studio.engine.text_partners import default_partner, no_partner_sentence, partner_runs
    from ssl_studio.engine.trained import load_text_model, read_text_run

    runs, text = _split_items(args.items)
    settings = AskSettings(temperature=args.temperature, top_k=args.top_k, new_tokens=args.tokens, fills=args.fills, seed=args.seed)
    settings.check()
    configs = [read_text_run(run)[1] for run in runs]  # every run refused in one sentence before any is loaded
    if len(runs) == 2 and configs[0].objective.name == configs[1].objective.name:
        raise ConfigError("", f"Both runs are {configs[0].objective.name} runs; pass one causal-lm and one masked-lm run "
                              "(or one run: its partner is found next to it).")
    if len(runs) == 1 and not args.alone:
        cfg = configs[0]
        partner = default_partner(partner_runs(runs[0], cfg.objective.name, cfg.data.source))
        if partner is None:
            sys.stderr.write(no_partner_sentence(cfg.objective.name, cfg.data.source, Path(runs[0]).parent) + "\n")
        else:
            runs.append(str(partner.path))
    models: dict[str, object] = {}
    names: dict[str, str] = {}
    for run in runs:
        model, objective = load_text_model(run, args.device)
        key = "causal" if objective == "causal-lm" else "masked"
        models[key] = model
        names[key] = f" ({Path(run).name})"
    result = answer(text, models.get("causal"), models.get("masked"), settings)
    print("\n".join(answer_lines(result, names)))
    return 0


__all__ = ["ask"]
