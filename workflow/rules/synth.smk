# Synthetic samples: the workflow generates the image and its ground truth.


rule synthesize:
    output:
        image=directory(out("input.ome.zarr")),
        truth=out("input.truth.parquet"),
    params:
        synthetic=lambda wc: config["samples"][wc.sample]["synthetic"],
    log:
        work("logs/synthesize.log"),
    benchmark:
        work("benchmarks/synthesize.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/synthesize.py"
