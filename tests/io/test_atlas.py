import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from traice.core.errors import InputError
from traice.io.atlas import Atlas, read_structures
from traice.io.multiscale import write_multiscale

from helpers import STRUCTURES, annotation

def test_brainglobe_json_and_csv_give_the_same_hierarchy(tmp_path):
    (tmp_path / "structures.json").write_text(json.dumps(STRUCTURES))
    pd.DataFrame([{"id": s["id"], "acronym": s["acronym"], "name": s["name"],
                   "parent_structure_id": s["structure_id_path"][-2] if len(s["structure_id_path"]) > 1 else None}
                  for s in STRUCTURES]).to_csv(tmp_path / "structures.csv", index=False)
    a, b = read_structures(tmp_path / "structures.json"), read_structures(tmp_path / "structures.csv")
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[315, "parent_id"] == 8 and a.loc[1, "parent_id"] == 0
    assert a["depth"].to_dict() == {1: 0, 8: 1, 315: 2, 1089: 2, 1009: 1}


@pytest.mark.parametrize("rows, message", [
    ([{"id": 1, "acronym": "root", "name": "root"}], "no column parent_structure_id"),
    ([{"id": 1, "acronym": "a", "name": "a", "parent_structure_id": 7}], "has parent 7, which is not in the table"),
    ([{"id": 1, "acronym": "a", "name": "a", "parent_structure_id": 2},
      {"id": 2, "acronym": "b", "name": "b", "parent_structure_id": 1}], "form a cycle"),
    ([{"id": 1, "acronym": "a", "name": "a", "parent_structure_id": None},
      {"id": 1, "acronym": "b", "name": "b", "parent_structure_id": None}], "id 1 appears twice"),
])
def test_bad_structure_tables_are_named_in_one_line(tmp_path, rows, message):
    path = tmp_path / "s.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(InputError, match=message) as err:
        read_structures(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_structure_at_points_and_volumes_at_the_annotations_own_resolution(tmp_path):
    (tmp_path / "structures.json").write_text(json.dumps(STRUCTURES))
    tifffile.imwrite(tmp_path / "registered_atlas.tiff", annotation())
    # the sample: 24 x 384 x 384 voxels of 1.25 x 0.4 x 0.4 µm, so annotation voxels are 5 x 3.2 x 3.2 µm
    atlas = Atlas.open(tmp_path / "registered_atlas.tiff", tmp_path / "structures.json", (24, 384, 384), (1.25, 0.4, 0.4))
    assert atlas.spacing == pytest.approx((5.0, 3.2, 3.2))
    points = np.array([[2.0, 50.0, 10.0], [10.0, 50.0, 10.0], [10.0, 50.0, 100.0], [10.0, 1.0, 1.0], [500.0, 0, 0]])
    assert atlas.structure_at(points).tolist() == [1009, 315, 1089, 0, 0]
    counts = atlas.voxel_counts([(np.zeros(3), np.array([30.0, 153.6, 153.6]))])
    ann = annotation()
    assert counts.to_dict() == dict(zip(*[v.tolist() for v in np.unique(ann, return_counts=True)]))
    half = atlas.voxel_counts([(np.zeros(3), np.array([30.0, 153.6, 76.8]))])  # x < half: no hippocampus
    assert 1089 not in half and half[315] == 5 * 48 * 24 - 5 * 16
    assert atlas.lineage(315) == [315, 8, 1] and atlas.lineage(12345) == []


def test_ome_zarr_annotation_keeps_large_ids_exact(tmp_path):
    ann = annotation().astype(np.uint32)
    ann[ann == 1089] = 614454277          # an Allen CCF id beyond float32's exact integers
    write_multiscale(tmp_path / "atlas.ome.zarr", ann, (5.0, 3.2, 3.2), footprint=(6, 48, 48), label=True)
    rows = STRUCTURES[:3] + [{"id": 614454277, "acronym": "X", "name": "x", "structure_id_path": [1, 8, 614454277]}]
    (tmp_path / "s.json").write_text(json.dumps(rows))
    atlas = Atlas.open(tmp_path / "atlas.ome.zarr", tmp_path / "s.json", (24, 384, 384), (1.25, 0.4, 0.4))
    assert atlas.structure_at(np.array([[10.0, 50.0, 100.0]])).tolist() == [614454277]


def test_annotation_must_be_3d_integer_labels(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(STRUCTURES))
    tifffile.imwrite(tmp_path / "float.tiff", annotation().astype(np.float32))
    with pytest.raises(InputError, match="float32 voxels; expected integer structure ids"):
        Atlas.open(tmp_path / "float.tiff", tmp_path / "s.json", (24, 384, 384), (1.25, 0.4, 0.4))
    with pytest.raises(InputError, match="atlas annotation .*missing.tiff"):
        Atlas.open(tmp_path / "missing.tiff", tmp_path / "s.json", (24, 384, 384), (1.25, 0.4, 0.4))
