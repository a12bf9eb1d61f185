"""The one-pass maps: offset targets, storage encoding, and panoptic quality."""

from __future__ import annotations

import numpy as np

from traice.core.maps import OFFSET_SCALE_UM, OFFSET_STEP, decode_offsets, decode_probability, encode, offsets_to_soma
from traice.core.metrics import panoptic_quality

SPACING = (1.25, 0.4, 0.4)


def test_offsets_point_every_voxel_at_its_own_soma():
    labels = np.zeros((6, 20, 30), np.uint16)
    labels[1:5, 2:8, 2:12] = 1
    labels[1:5, 10:18, 15:28] = 2
    centres = np.array([[3.0, 5.0, 7.0], [2.5, 14.0, 21.0]])
    off = offsets_to_soma(labels, centres, SPACING)
    assert off.shape == (3, 6, 20, 30) and off.dtype == np.float32
    assert (off[:, labels == 0] == 0).all()
    grid = np.indices(labels.shape).astype(float)
    votes = grid + off * OFFSET_SCALE_UM / np.asarray(SPACING)[:, None, None, None]
    for cell, centre in enumerate(centres, start=1):
        np.testing.assert_allclose(votes[:, labels == cell].T, np.broadcast_to(centre, ((labels == cell).sum(), 3)), atol=1e-4)
    # an origin shifts the frame of the centres
    shifted = offsets_to_soma(labels, centres + [1, 2, 3], SPACING, origin=(1, 2, 3))
    np.testing.assert_allclose(shifted, off, atol=1e-6)


def test_encoding_round_trip_and_empty_background():
    rng = np.random.default_rng(0)
    maps = np.concatenate([rng.random((2, 4, 8, 8)), rng.uniform(-1.5, 1.5, (3, 4, 8, 8))]).astype(np.float32)
    maps[1, 0] = 0.0  # no foreground in the first plane
    prob, off = encode(maps)
    assert prob.dtype == np.uint8 and off.dtype == np.int8
    np.testing.assert_allclose(decode_probability(prob), maps[:2], atol=0.5 / 255 + 1e-6)
    kept = prob[1] > 0
    np.testing.assert_allclose(decode_offsets(off)[:, kept], maps[2:, kept], atol=OFFSET_STEP / 2 + 1e-6)
    assert (off[:, 0] == 0).all()  # offsets are dropped where there is no foreground
    # beyond the int8 range: clipped, not wrapped
    far = np.zeros((5, 1, 1, 1), np.float32)
    far[1], far[2] = 1.0, 10.0
    assert encode(far)[1][0, 0, 0, 0] == 127


def test_panoptic_quality():
    truth = np.zeros((4, 10, 10), np.int32)
    truth[:, :5] = 1
    truth[:, 5:] = 2
    assert panoptic_quality(truth, truth)["pq"] == 1.0
    pred = truth.copy()
    pred[:, :, :3] = 0  # cell 1 and 2 each lose 30 %: IoU 0.7
    result = panoptic_quality(pred, truth)
    assert result["tp"] == 2 and result["fp"] == result["fn"] == 0
    assert abs(result["pq"] - 0.7) < 1e-9
    merged = np.where(truth > 0, 1, 0)  # one instance over two cells: IoU 0.5 each, no match
    assert panoptic_quality(merged, truth) == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1, "fn": 2}
    assert panoptic_quality(np.zeros_like(truth), np.zeros_like(truth))["pq"] == 1.0
