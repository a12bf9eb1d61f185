# Soma detection per tile batch, then merge into one cell table (a checkpoint: cell batches).


rule detect:
    input:
        plan=WORK + "/plan/plan.json",
        tiles=WORK + "/plan/tiles.parquet",
    output:
        WORK + "/somas/batch_{b}.parquet",
    params:
        detect=lambda wc: config["detect"],
    resources:
        mem_mb=4000,
    log:
        WORK + "/logs/detect_{b}.log",
    benchmark:
        WORK + "/benchmarks/detect_{b}.tsv"
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/detect.py"


checkpoint merge:
    input:
        plan=WORK + "/plan/plan.json",
        somas=detect_batches,
    output:
        cells=OUT + "/cells.parquet",
    params:
        dedupe_um=config["merge"]["dedupe_um"],
    log:
        WORK + "/logs/merge.log",
    benchmark:
        WORK + "/benchmarks/merge.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/merge.py"
