"""Snakemake script: QC figures and report.html."""
import sys

from traice.report import write_report

sys.stderr = open(snakemake.log[0], "w")
i = snakemake.input
p = snakemake.params
write_report(i.plan, i.cells, i.morphology, i.regions, i.labels, p.benchmarks, snakemake.output.html, snakemake.output.qc, p.gallery)
