"""One entry function per workflow rule (plan, detect, merge, segment, stitch, morphology, regions, report).

Each stage reads the run's :class:`~traice.io.plan.Plan` and its inputs and
writes its outputs atomically; the Snakemake scripts only call these. Detect
and segment keep each method in its own module behind one ``METHODS`` table
(:func:`traice.stages.methods.choose`).
"""
