# Plan: intensity statistics, tile grid and batches (a checkpoint: batch counts follow from it).


checkpoint plan:
    input:
        image=image_of,
    output:
        plan=work("plan/plan.json"),
        tiles=work("plan/tiles.parquet"),
    params:
        plan=lambda wc: config["plan"],
        stitch=lambda wc: config["stitch"],
        roi=lambda wc: config["roi"],
        channel=config["channel"],
    log:
        work("logs/plan.log"),
    benchmark:
        work("benchmarks/plan.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/plan.py"
