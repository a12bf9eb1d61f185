"""Basics every layer uses: numpy, scipy, pandas and scikit-image; nothing else of traice.

Geometry (boxes, tiles), intensity statistics and normalisation, masks around a
soma, windows, batching, regions of interest, the tissue mask, the output
tables' schema, scores against ground truth and :class:`~traice.core.errors.InputError`.
"""
