"""Snakemake script: fine-tune the one-pass network from clicked somas (LoRA adapter or whole checkpoint)."""
from traice.config import from_config
from traice.core.errors import InputError
from traice.io.joblog import start_job
from traice.training.finetune import FinetuneConfig, finetune

start_job(snakemake.log[0])
f = dict(snakemake.params.finetune)
image, points, channel, box, traces = (f.pop(k) for k in ("image", "points", "channel", "complete_box", "traces"))
if not image or not points:
    raise InputError("finetune.image and finetune.points: both must be set (--config 'finetune={image: ..., points: ...}')")
summary = finetune(image, points, snakemake.output[0], from_config(FinetuneConfig, f), snakemake.params.base, channel,
                   [box["start_um"], box["stop_um"]] if box else None, traces)
print(summary)
