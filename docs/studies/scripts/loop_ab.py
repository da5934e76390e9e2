"""Before/after of the probe's feature reuse in the SimCLR loop, A/B interleaved in one process (docs/studies/recipes.md).

"before" turns the reuse off (the probe runs the backbone again for the projector rank); "after" is the
code as it is.  Run from the repository root, one thread:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/studies/scripts/loop_ab.py REPEATS STEPS
"""
import statistics, sys, torch
torch.set_num_threads(1)
from ssl_studio.benchmarks.loop import bench_loop, loop_table, PARTS
from ssl_studio.engine.probing import Prober
reuse = Prober._reuses_backbone_features
rows = {"before": [], "after": []}
for rep in range(int(sys.argv[1])):
    for label in ("before", "after"):
        Prober._reuses_backbone_features = reuse if label == "after" else (lambda self: False)
        rows[label].append(bench_loop(steps=int(sys.argv[2])))
        print(label, rep, round(rows[label][-1]["probe_s"], 3), round(rows[label][-1]["seconds_per_step"], 4), flush=True)
all_rows, labels = [], []
for label in ("before", "after"):
    all_rows += rows[label]; labels += [f"{label} {i + 1}" for i in range(len(rows[label]))]
print("\n".join(loop_table(all_rows, labels)))
for label in ("before", "after"):
    print(label, "median probe s", round(statistics.median(r["probe_s"] for r in rows[label]), 3),
          "median probes share %", round(100 * statistics.median(r["shares"]["probes"] for r in rows[label]), 2),
          "median ms/step", round(1000 * statistics.median(r["seconds_per_step"] for r in rows[label]), 1))
