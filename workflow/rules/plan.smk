# Plan: intensity statistics, tile grid and batches (a checkpoint: batch counts follow from it).
# With `roi` over a finished result, the plan first sets that result aside in work/base (traice.stages.update).


checkpoint plan:
    input:
        image=image_of,
    output:
        plan=work("plan/plan.json"),
        tiles=work("plan/tiles.parquet"),
        tissue=work("plan/tissue.npz"),
    params:
        plan=lambda wc: config["plan"],
        stitch=lambda wc: config["stitch"],
        roi=lambda wc: config["roi"],
        margin_um=config["segment"]["radius_um"],
        maps_cover_margin=config["segment"]["method"] in NEEDS_MAPS,
        channel=image_channel,
    log:
        work("logs/plan.log"),
    benchmark:
        work("benchmarks/plan.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/plan.py"
