import numpy as np

from traice.stages.report import density_bins


def test_density_bins_never_end_in_a_sliver():
    # 409.6 µm in 50 µm bins: seven full bins and a 59.6 µm last one, not eight and a 9.6 µm strip
    edges = density_bins(409.6, 50.0)
    np.testing.assert_allclose(edges, [0, 50, 100, 150, 200, 250, 300, 350, 409.6])
    np.testing.assert_allclose(density_bins(430.0, 50.0)[-2:], [400, 430])  # a 30 µm strip is over half a bin
    np.testing.assert_allclose(density_bins(20.0, 50.0), [0, 20])  # smaller than one bin: one bin
