# Per-cell segmentation, one job per batch of cells; claims stored as cropped masks.


rule segment:
    input:
        plan=WORK + "/plan/plan.json",
        cells=OUT + "/cells.parquet",
    output:
        directory(WORK + "/masks/batch_{b}.zarr"),
    params:
        segment=lambda wc: config["segment"],
    resources:
        mem_mb=4000,
    log:
        WORK + "/logs/segment_{b}.log",
    benchmark:
        WORK + "/benchmarks/segment_{b}.tsv"
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/segment.py"


rule mask_index:
    input:
        segment_batches,
    output:
        WORK + "/masks/index.parquet",
    log:
        WORK + "/logs/mask_index.log",
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/mask_index.py"
