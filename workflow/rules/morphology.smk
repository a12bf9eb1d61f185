# Per-cell morphology and SWC skeletons from the stitched labels, per cell batch, then gathered.


rule morphology_batch:
    input:
        plan=work("plan/plan.json"),
        labels=out("segmentation.ome.zarr"),
        stitched=work("stitch/summary.json"),
        cells=out("cells.parquet"),
        index=work("masks/index.parquet"),
        maps=segment_maps,  # the one-pass foreground weighs each voxel of the volumes (partial volumes)
    output:
        directory(work("morphology/batch_{b}")),
    params:
        cells_per_job=config["morphology"]["cells_per_job"],
        max_jobs=config["morphology"]["max_jobs"],
    log:
        work("logs/morphology_{b}.log"),
    benchmark:
        work("benchmarks/morphology_batch_{b}.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/morphology_batch.py"


rule morphology:
    input:
        unpack(atlas_files),
        plan=work("plan/plan.json"),
        cells=out("cells.parquet"),
        batches=morphology_batches,
    output:
        table=out("morphology.parquet"),
        csv=out("morphology.csv"),
        sholl=out("sholl.parquet"),
        swc=directory(out("swc")),
    log:
        work("logs/morphology.log"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/morphology.py"
