"""models/mouth_transfer.MeshRaster: the 8-bit raster and LUT maps give the same pixels'
owners and the same backward maps as the straightforward version (one int32 label image,
-1 outside, pinholes filled by a float dilation, coefficients looked up with numpy's take)."""
from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import Delaunay

from models.mouth_transfer import SLIVER_PX, TRIANGLES, MeshRaster


def reference_raster(dst: np.ndarray, tris: np.ndarray, w: int, h: int, min_height: float) -> tuple[np.ndarray, np.ndarray]:
    """(label, dst_h): the owner of each pixel (-1 outside), as first written."""
    d = dst[tris]
    dst_h = np.concatenate([d, np.ones((len(tris), 3, 1))], axis=2)
    area = np.abs(np.linalg.det(dst_h)) / 2
    longest = np.max(np.linalg.norm(d - np.roll(d, 1, axis=1), axis=2), axis=1)
    keep = (area > 0.25) & (2 * area / np.maximum(longest, 1e-9) >= min_height)
    label = np.full((h, w), -1, dtype=np.int32)
    corners = np.round(d * 16).astype(np.int32)
    for k in np.flatnonzero(keep):
        cv2.fillConvexPoly(label, corners[k], int(k), lineType=cv2.LINE_8, shift=4)
    hole = label < 0
    if hole.any():
        square = np.ones((3, 3), np.uint8)
        inside = cv2.morphologyEx((~hole).astype(np.uint8), cv2.MORPH_CLOSE, square).astype(bool)
        neighbour = cv2.dilate(label.astype(np.float32), square)
        fill = hole & inside & (neighbour >= 0)
        label[fill] = neighbour[fill].astype(np.int32)
    return label, keep


def reference_maps(label: np.ndarray, keep: np.ndarray, dst: np.ndarray, src: np.ndarray,
                   tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dst_h = np.concatenate([dst[tris], np.ones((len(tris), 3, 1))], axis=2)
    affine = np.zeros((len(tris) + 1, 2, 3))
    affine[:, 0, 0] = affine[:, 1, 1] = 1.0
    if keep.any():
        solved = np.linalg.solve(dst_h[keep], src[tris][keep])
        affine[:-1][keep] = np.transpose(solved, (0, 2, 1))
    coef = np.ascontiguousarray(affine.reshape(-1, 6).T, dtype=np.float32)
    c = [row.take(label) for row in coef]
    h, w = label.shape
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    return c[0] * xs + c[1] * ys + c[2], c[3] * xs + c[4] * ys + c[5]


def template_mesh(rng: np.random.Generator, jitter: float, close_lips: bool) -> tuple[np.ndarray, np.ndarray]:
    """A mouth mesh's control points in pixels (the template's Delaunay triangulation):
    an open or shut mouth about 120 px wide in a 160 x 100 box, jittered."""
    t = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    outer = np.stack([80 + 45 * np.cos(t), 50 - 25 * np.sin(t)], axis=1)
    t8 = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    inner = np.stack([80 + 32 * np.cos(t8), 50 - 10 * np.sin(t8)], axis=1)
    if close_lips:  # the lower inner lip pressed onto the upper one: slivers and zero-area triangles
        inner[5:8, 1] = inner[[3, 2, 1], 1] + rng.uniform(0.0, 1.2, 3)
    t16 = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = np.stack([80 + 70 * np.cos(t16), 50 + 45 * np.sin(t16)], axis=1)
    points = np.concatenate([outer, inner, ring]) + rng.normal(0, jitter, (36, 2))
    return points, TRIANGLES


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), jitter=st.floats(0.0, 6.0), close_lips=st.booleans(),
       min_height=st.sampled_from([0.0, SLIVER_PX]))
def test_owners_and_maps_match_the_straightforward_raster(seed, jitter, close_lips, min_height):
    rng = np.random.default_rng(seed)
    dst, tris = template_mesh(rng, jitter, close_lips)
    src = dst + rng.normal(0, 4.0, dst.shape)
    w, h = 160, 100
    raster = MeshRaster.of(dst, tris, w, h, min_height=min_height)
    label, keep = reference_raster(dst, tris, w, h, min_height)
    assert np.array_equal(raster.keep, keep)
    assert np.array_equal(raster.owner.astype(np.int32) - 1, label)
    assert np.array_equal(raster.covered, label >= 0)
    mx, my = raster.maps(src, tris)
    rx, ry = reference_maps(label, keep, dst, src, tris)
    assert mx.dtype == my.dtype == np.float32
    assert np.array_equal(mx, rx) and np.array_equal(my, ry)


def test_a_mesh_of_many_triangles_takes_the_wide_path():
    """Over 254 triangles the owners no longer fit a byte: the same answer, via numpy's take."""
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform(5, 195, (200, 2)), [[0, 0], [199, 0], [0, 149], [199, 149]]])
    tris = Delaunay(points).simplices.astype(np.int32)
    assert len(tris) >= 255
    src = points + rng.normal(0, 2.0, points.shape)
    raster = MeshRaster.of(points, tris, 200, 150)
    assert raster.owner.dtype == np.uint16
    label, keep = reference_raster(points, tris, 200, 150, 0.0)
    assert np.array_equal(raster.owner.astype(np.int32) - 1, label)
    mx, my = raster.maps(src, tris)
    rx, ry = reference_maps(label, keep, points, src, tris)
    assert np.array_equal(mx, rx) and np.array_equal(my, ry)
