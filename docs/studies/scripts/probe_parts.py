"""Where one probe's time goes: embedding the probe images and the k-NN bank, the online k-NN and linear probe, the diagnostics.

A 2-step default SimCLR run with ``probe.every = 1`` (three probes: step 0, step 1 and the closing one), with
timers around the probe's calls (docs/studies/recipes.md).  Run from the repository root, one thread:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/studies/scripts/probe_parts.py
"""
import time, torch
torch.set_num_threads(1)
from ssl_studio.config import RunConfig
from ssl_studio.engine import trainer as tm, diagnostics, evaluate
import ssl_studio.engine.probing as pr
timings = {}
def wrap(mod, name):
    f = getattr(mod, name)
    def w(*a, **k):
        t0 = time.perf_counter(); r = f(*a, **k); timings[name] = timings.get(name, 0) + time.perf_counter() - t0; return r
    setattr(mod, name, w)
for n in ("knn_accuracy", "fit_linear", "standardise"): wrap(pr, n)
for n in ("effective_rank", "spectrum", "pca_2d", "mean_cosine", "dim_std"): wrap(diagnostics, n)
orig_embed = pr.Prober.embed
def emb(self, idx):
    t0 = time.perf_counter(); r = orig_embed(self, idx); timings[f"embed{len(idx)}"] = timings.get(f"embed{len(idx)}", 0) + time.perf_counter() - t0; return r
pr.Prober.embed = emb
import tempfile
cfg = RunConfig(); cfg.budget.steps = 2; cfg.probe.every = 1
with tempfile.TemporaryDirectory() as d:
    cfg.out = d
    t = tm.Trainer(cfg); 
    orig = t._probe
    def p(final):
        t0 = time.perf_counter(); r = orig(final); timings["probe_total"] = timings.get("probe_total", 0) + time.perf_counter() - t0; return r
    t._probe = p
    t._evaluate = lambda: {}
    r = t.run()
print(r.status, {k: round(v, 3) for k, v in timings.items()})
