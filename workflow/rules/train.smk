# Model training (not part of `all`): snakemake train_soma --config 'train={traces: /path/to/swc_fields}'
# Weights land in {results}/models/{task}/; point detect.model (soma, cells) or segment.model (branch) at
# model.pt (or best.pt) to use them. train_branch and train_cells start from their `init` (default: shipped stage 1).


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
