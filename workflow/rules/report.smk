# QC report and the run summary.


rule report:
    input:
        plan=work("plan/plan.json"),
        cells=out("cells.parquet"),
        morphology=out("morphology.parquet"),
        labels=out("segmentation.ome.zarr"),
        stitched=stitch_flags,
    output:
        html=out("report.html"),
        qc=directory(out("qc")),
    params:
        gallery=config["report"]["gallery"],
    log:
        work("logs/report.log"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report.py"


rule run_summary:
    input:
        plan=work("plan/plan.json"),
        cells=out("cells.parquet"),
        morphology=out("morphology.parquet"),
        index=work("masks/index.parquet"),
        stitched=stitch_flags,
        report=out("report.html"),
    output:
        out("run.json"),
    params:
        config=config,
        benchmarks=work("benchmarks"),
    log:
        work("logs/run_summary.log"),
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/run_summary.py"
