# QC report and the run summary.


rule regions:
    input:
        unpack(atlas_files),
        plan=work("plan/plan.json"),
        cells=out("cells.parquet"),
        morphology=out("morphology.parquet"),
    output:
        out("regions.parquet"),
    params:
        regions=config["regions"],
    log:
        work("logs/regions.log"),
    benchmark:
        work("benchmarks/regions.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/regions.py"


rule report:
    input:
        plan=work("plan/plan.json"),
        cells=out("cells.parquet"),
        merged=work("cells_to_process.json"),
        somas=detect_batches,
        morphology=out("morphology.parquet"),
        regions=out("regions.parquet"),
        labels=out("segmentation.ome.zarr"),
        stitched=work("stitch/summary.json"),
    output:
        html=out("report.html"),
        qc=report(
            directory(out("qc")),
            patterns=["{name}.png"],
            caption="../report/qc.rst",
            category="QC",
            subcategory="{sample}",
        ),
    params:
        gallery=config["report"]["gallery"],
        benchmarks=work("benchmarks"),
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
        merged=work("cells_to_process.json"),
        morphology=out("morphology.parquet"),
        stitched=work("stitch/summary.json"),
        regions=out("regions.parquet"),
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
