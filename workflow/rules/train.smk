# Model training (not part of `all`): snakemake train_soma --config 'train={traces: /path/to/swc_fields}'
# Weights land in {results}/models/soma/; point detect.model at model.pt (or best.pt) to use them.


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
