# Samples the workflow makes itself: synthetic fields (image and truth), and microscope files converted
# into OME-Zarr (traice.io.convert).


rule synthesize:
    wildcard_constraints:
        sample=samples_where(is_synthetic),
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


rule convert:
    wildcard_constraints:
        sample=samples_where(is_converted),
    input:
        lambda wc: source_files(config["samples"][wc.sample]),
    output:
        directory(out("input.ome.zarr")),
    params:
        source=lambda wc: sample_source(config["samples"][wc.sample]),
        channel=config["channel"],
    log:
        work("logs/convert.log"),
    benchmark:
        work("benchmarks/convert.tsv")
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/convert.py"
