# Synthetic samples: the workflow generates the image and its ground truth.


rule synthesize:
    output:
        image=directory(OUT + "/input.ome.zarr"),
        truth=OUT + "/input.truth.parquet",
    params:
        synthetic=lambda wc: config["samples"][wc.sample]["synthetic"],
    log:
        WORK + "/logs/synthesize.log",
    benchmark:
        WORK + "/benchmarks/synthesize.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/synthesize.py"
