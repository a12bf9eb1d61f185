"""Snakemake script: QC figures and report.html."""
import sys

from traice.report import write_report

sys.stderr = open(snakemake.log[0], "w")
i = snakemake.input
write_report(i.plan, i.cells, i.morphology, i.labels, snakemake.output.html, snakemake.output.qc, snakemake.params.gallery)
