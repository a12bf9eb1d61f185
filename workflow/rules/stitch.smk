# Stitch claims into the label image; each job owns a disjoint block of label chunks.


rule label_init:
    input:
        plan=work("plan/plan.json"),
    output:
        directory(out("segmentation.ome.zarr")),
    log:
        work("logs/label_init.log"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/label_init.py"


rule stitch:
    input:
        plan=work("plan/plan.json"),
        labels=out("segmentation.ome.zarr"),
        cells=out("cells.parquet"),
        index=work("masks/index.parquet"),
    output:
        work("stitch/block_{k}.done"),
    resources:
        mem_mb=2000,
    log:
        work("logs/stitch_{k}.log"),
    benchmark:
        work("benchmarks/stitch_{k}.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/stitch.py"


rule stitch_summary:
    input:
        stitch_flags,
    output:
        work("stitch/summary.json"),
    log:
        work("logs/stitch_summary.log"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/stitch_summary.py"
