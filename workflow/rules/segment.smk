# Per-cell segmentation, one job per batch of cells; claims stored as cropped masks.


rule segment:
    input:
        plan=work("plan/plan.json"),
        cells=out("cells.parquet"),
        maps=segment_maps,
    output:
        directory(work("masks/batch_{b}.zarr")),
    params:
        segment=lambda wc: config["segment"],
    resources:
        mem_mb=4000,
    log:
        work("logs/segment_{b}.log"),
    benchmark:
        work("benchmarks/segment_{b}.tsv")
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/segment.py"


rule mask_index:
    input:
        segment_batches,
    output:
        work("masks/index.parquet"),
    log:
        work("logs/mask_index.log"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/mask_index.py"
