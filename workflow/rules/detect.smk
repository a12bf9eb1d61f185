# Soma detection per tile batch, then merge into one cell table (a checkpoint: cell batches).


rule detect:
    input:
        plan=work("plan/plan.json"),
        tiles=work("plan/tiles.parquet"),
    output:
        somas=work("somas/batch_{b}.parquet"),
        maps=directory(work("maps/batch_{b}.zarr")),
    params:
        detect=lambda wc: config["detect"],
    resources:
        mem_mb=4000,
    log:
        work("logs/detect_{b}.log"),
    benchmark:
        work("benchmarks/detect_{b}.tsv")
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/detect.py"


checkpoint merge:
    input:
        plan=work("plan/plan.json"),
        somas=detect_batches,
    output:
        cells=out("cells.parquet"),
        to_process=work("cells_to_process.json"),
    params:
        dedupe_um=config["merge"]["dedupe_um"],
    log:
        work("logs/merge.log"),
    benchmark:
        work("benchmarks/merge.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/merge.py"


rule maps_index:
    input:
        detect_maps,
    output:
        work("maps/index.parquet"),
    log:
        work("logs/maps_index.log"),
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/maps_index.py"
