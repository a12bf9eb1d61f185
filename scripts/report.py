"""Snakemake script: QC figures and report.html."""
from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.report import write_report

start_job(snakemake.log[0])
i = snakemake.input
p = snakemake.params
write_report(Plan.read(i.plan), i.cells, i.merged, i.morphology, i.regions, i.labels, p.benchmarks, snakemake.output.html,
             snakemake.output.qc, p.gallery, i.somas)
