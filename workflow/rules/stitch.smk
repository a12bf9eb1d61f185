# Stitch claims into the label image; each job owns a disjoint block of label chunks.


rule label_init:
    input:
        plan=WORK + "/plan/plan.json",
    output:
        directory(OUT + "/segmentation.ome.zarr"),
    log:
        WORK + "/logs/label_init.log",
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/label_init.py"


rule stitch:
    input:
        plan=WORK + "/plan/plan.json",
        labels=OUT + "/segmentation.ome.zarr",
        index=WORK + "/masks/index.parquet",
    output:
        WORK + "/stitch/block_{k}.done",
    resources:
        mem_mb=2000,
    log:
        WORK + "/logs/stitch_{k}.log",
    benchmark:
        WORK + "/benchmarks/stitch_{k}.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/stitch.py"
