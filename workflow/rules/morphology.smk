# Per-cell morphology and SWC skeletons from the stitched labels, per cell batch, then gathered.


rule morphology_batch:
    input:
        plan=WORK + "/plan/plan.json",
        labels=OUT + "/segmentation.ome.zarr",
        stitched=stitch_flags,
        cells=OUT + "/cells.parquet",
        index=WORK + "/masks/index.parquet",
    output:
        directory(WORK + "/morphology/batch_{b}"),
    params:
        cells_per_job=config["segment"]["cells_per_job"],
    log:
        WORK + "/logs/morphology_{b}.log",
    benchmark:
        WORK + "/benchmarks/morphology_{b}.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/morphology_batch.py"


rule morphology:
    input:
        morphology_batches,
    output:
        table=OUT + "/morphology.parquet",
        csv=OUT + "/morphology.csv",
        swc=directory(OUT + "/swc"),
    log:
        WORK + "/logs/morphology.log",
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/morphology.py"
