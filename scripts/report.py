"""Snakemake script: QC figures and report.html."""
import sys

from traice.io.plan import Plan
from traice.stages.report import write_report

sys.stderr = open(snakemake.log[0], "w")
i = snakemake.input
p = snakemake.params
write_report(Plan.read(i.plan), i.cells, i.morphology, i.regions, i.labels, p.benchmarks, snakemake.output.html,
             snakemake.output.qc, p.gallery)
