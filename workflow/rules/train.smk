# Model training (not part of `all`): snakemake train_soma --config 'train={traces: /path/to/swc_fields}'
# Weights land in {results}/models/{task}/; point detect.model (soma, cells) or segment.model (branch) at
# model.pt (or best.pt) to use them. train_branch and train_cells start from their `init` (default: shipped stage 1).
# snakemake pretrain --config 'train={images: [a.ome.zarr, b.ome.zarr], synthetic: 0}' trains a denoiser on unlabelled
# windows into models/pretrain/; train.soma.init (or train.cells.init) set to its model.pt starts from it.
# snakemake finetune --config 'finetune={image: new.ome.zarr, points: clicks.csv}' writes models/finetune/adapter.pt
# (LoRA, for detect.adapter) or, with mode full, models/finetune/model.pt (for detect.model).


rule train_soma:
    output:
        model=os.path.join(RESULTS, "models", "soma", "model.pt"),
        best=os.path.join(RESULTS, "models", "soma", "best.pt"),
        summary=os.path.join(RESULTS, "models", "soma", "training.json"),
    params:
        train=lambda wc: config["train"],
    resources:
        mem_mb=16000,
    log:
        os.path.join(RESULTS, "models", "soma", "train.log"),
    benchmark:
        os.path.join(RESULTS, "models", "soma", "benchmark.tsv")
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/train.py"


use rule train_soma as train_branch with:
    output:
        model=os.path.join(RESULTS, "models", "branch", "model.pt"),
        best=os.path.join(RESULTS, "models", "branch", "best.pt"),
        summary=os.path.join(RESULTS, "models", "branch", "training.json"),
    log:
        os.path.join(RESULTS, "models", "branch", "train.log"),
    benchmark:
        os.path.join(RESULTS, "models", "branch", "benchmark.tsv")


use rule train_soma as train_cells with:
    output:
        model=os.path.join(RESULTS, "models", "cells", "model.pt"),
        best=os.path.join(RESULTS, "models", "cells", "best.pt"),
        summary=os.path.join(RESULTS, "models", "cells", "training.json"),
    log:
        os.path.join(RESULTS, "models", "cells", "train.log"),
    benchmark:
        os.path.join(RESULTS, "models", "cells", "benchmark.tsv")


use rule train_soma as pretrain with:
    output:
        model=os.path.join(RESULTS, "models", "pretrain", "model.pt"),
        best=os.path.join(RESULTS, "models", "pretrain", "best.pt"),
        summary=os.path.join(RESULTS, "models", "pretrain", "training.json"),
    log:
        os.path.join(RESULTS, "models", "pretrain", "train.log"),
    benchmark:
        os.path.join(RESULTS, "models", "pretrain", "benchmark.tsv")


rule finetune:
    input:
        image=lambda wc: config["finetune"]["image"] or [],
        points=lambda wc: config["finetune"]["points"] or [],
        traces=lambda wc: config["finetune"]["traces"] or [],
    output:
        os.path.join(RESULTS, "models", "finetune", "adapter.pt" if config["finetune"]["mode"] == "lora" else "model.pt"),
    params:
        finetune=config["finetune"],
        base=config["detect"]["model"],
    resources:
        mem_mb=8000,
    log:
        os.path.join(RESULTS, "models", "finetune", "finetune.log"),
    benchmark:
        os.path.join(RESULTS, "models", "finetune", "benchmark.tsv")
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/finetune.py"

