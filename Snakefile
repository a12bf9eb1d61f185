# traice: find and segment every microglial cell in a 3D fluorescence volume.
# Run: snakemake --cores N --configfile CFG   (see README.md)

# Defaults: config/config.yaml, merged under the user's --configfile in common.smk.

include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/stitch.smk"
include: "workflow/rules/morphology.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/train.smk"


# light aggregation steps run on the submitting host, not as cluster jobs
localrules:
    all,
    label_init,
    merge,
    maps_index,
    mask_index,
    stitch_summary,
    morphology,
    regions,
    run_summary,


rule all:
    default_target: True
    input:
        all_outputs,
