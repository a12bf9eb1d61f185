# QC report and the run summary.


rule report:
    input:
        plan=WORK + "/plan/plan.json",
        cells=OUT + "/cells.parquet",
        morphology=OUT + "/morphology.parquet",
        labels=OUT + "/segmentation.ome.zarr",
        stitched=stitch_flags,
    output:
        html=OUT + "/report.html",
        qc=directory(OUT + "/qc"),
    params:
        gallery=config["report"]["gallery"],
    log:
        WORK + "/logs/report.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report.py"


rule run_summary:
    input:
        plan=WORK + "/plan/plan.json",
        cells=OUT + "/cells.parquet",
        morphology=OUT + "/morphology.parquet",
        index=WORK + "/masks/index.parquet",
        stitched=stitch_flags,
        report=OUT + "/report.html",
    output:
        OUT + "/run.json",
    params:
        config=config,
        benchmarks=WORK + "/benchmarks",
    log:
        WORK + "/logs/run_summary.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/run_summary.py"
