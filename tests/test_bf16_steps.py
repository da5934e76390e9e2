"""Every objective trains a step in bf16, the precision ``auto`` picks on CPUs with AVX512-BF16 and on most GPUs.

The distributed losses were first checked in float32 only, and SimCLR's bf16 logits then
failed an ``index_put`` of a float32 value: this runs each objective's real training path
(the trainer, autocast included) for two steps in bf16, whatever this machine's CPU.
"""

import pytest

from ssl_studio.engine.trainer import Trainer
from ssl_studio.config import config_from_mapping
from ssl_studio.objectives import all_objectives

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(all_objectives()))
def test_every_objective_takes_bf16_steps(name, tmp_path):
    cls = all_objectives()[name]
    backbone = "vit" if cls.backbones and "convnet" not in cls.backbones else "convnet"
    text = cls.modality == "text"  # the text lab's Transformer: widths in multiples of 48, a few hundred passages
    cfg = config_from_mapping({
        "objective": {"name": name}, "model": {"backbone": backbone, "width": 48 if text else 16}, "precision": "bf16",
        "data": {"source": "text:builtin", "limit": 200, "resolution": 16} if text else {"source": "shapes", "num_images": 96}, "batch_size": 16, "budget": {"steps": 2},
        "probe": {"size": 16, "every": 0, "visuals_every": 0}, "out": str(tmp_path), "workers": 1,
    })
    result = Trainer(cfg).run()
    assert result.status == "completed", result.message
    assert result.step == 2
