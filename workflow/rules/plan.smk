# Plan: intensity statistics, tile grid and batches (a checkpoint: batch counts follow from it).


checkpoint plan:
    input:
        image=image_of,
    output:
        plan=WORK + "/plan/plan.json",
        tiles=WORK + "/plan/tiles.parquet",
    params:
        plan=lambda wc: config["plan"],
        stitch=lambda wc: config["stitch"],
        roi=lambda wc: config["roi"],
        channel=config["channel"],
    log:
        WORK + "/logs/plan.log",
    benchmark:
        WORK + "/benchmarks/plan.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/plan.py"
