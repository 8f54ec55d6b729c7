"""The image kernels against slow, obviously-right references (scipy/numpy)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

import veil

FIXTURES = Path(__file__).parent / "fixtures"


def photo(name: str = "two_faces.jpg") -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / name).convert("RGB"))


def exact_gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """scipy's sampled Gaussian with the nearest border rule, in float."""
    f = image.astype(np.float64)
    if f.ndim == 2:
        return ndimage.gaussian_filter(f, sigma, mode="nearest", truncate=4.0)
    return np.stack([ndimage.gaussian_filter(f[..., c], sigma, mode="nearest", truncate=4.0)
                     for c in range(f.shape[2])], axis=-1)


def step_edge(width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width), np.uint8)
    img[:, width // 2:] = 255
    img[height // 2:, :] = 255 - img[height // 2:, :]
    return img


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.2, 3.0, 5.0, 10.0, 17.5, 33.0, 60.0])
def test_gaussian_within_3_levels_on_step_edges(sigma):
    size = int(8 * sigma) + 40
    img = step_edge(size, size)
    err = np.abs(veil.gaussian_blur(img, sigma).astype(np.float64) - exact_gaussian(img, sigma))
    assert err.max() <= 3.0, f"max error {err.max():.2f}"


@pytest.mark.parametrize("sigma", [0.5, 1.5, 3.0, 10.0, 33.0])
def test_gaussian_mean_error_at_most_1_level_on_a_photo(sigma):
    img = photo()
    out = veil.gaussian_blur(img, sigma)
    mae = np.abs(out.astype(np.float64) - exact_gaussian(img, sigma)).mean()
    assert mae <= 1.0, f"mean abs error {mae:.3f}"


@pytest.mark.parametrize("radius", [0, 1, 4, 17, 300])
def test_box_blur_matches_uniform_filter(radius):
    img = photo()[::3, ::3].copy()
    want = np.stack([ndimage.uniform_filter(img[..., c].astype(np.float64), size=2 * radius + 1, mode="nearest")
                     for c in range(3)], axis=-1)
    got = veil.box_blur(img, radius)
    assert np.abs(got - want).max() <= 1.0


def block_means(img: np.ndarray, block: int) -> np.ndarray:
    h, w = img.shape[:2]
    out = np.empty_like(img)
    for y in range(0, h, block):
        for x in range(0, w, block):
            tile = img[y:y + block, x:x + block].astype(np.float64)
            out[y:y + block, x:x + block] = np.floor(tile.mean(axis=(0, 1)) + 0.5)
    return out


@pytest.mark.parametrize("block", [1, 7, 16, 1000])
def test_pixelate_is_block_mean(block):
    img = photo()[:200, :300].copy()
    np.testing.assert_array_equal(veil.pixelate(img, block), block_means(img, block))


def test_fill_and_noise():
    img = photo()
    filled = veil.fill(img, (10, 20, 30), region=(100, 50, 40, 30))
    assert (filled[50:80, 100:140] == (10, 20, 30)).all()
    outside = np.ones(img.shape[:2], bool)
    outside[50:80, 100:140] = False
    np.testing.assert_array_equal(filled[outside], img[outside])
    grey = veil.fill(img[..., 0].copy(), (255, 0, 0))
    assert (grey == 76).all()  # luma of pure red
    noisy = veil.add_noise(img, 20, seed=5)
    diff = noisy.astype(int) - img.astype(int)
    assert diff.min() >= -20 and diff.max() <= 20 and diff.std() > 5
    np.testing.assert_array_equal(noisy, veil.add_noise(img, 20, seed=5))
    assert not np.array_equal(noisy, veil.add_noise(img, 20, seed=6))


def test_alpha_is_kept_and_colour_under_it_processed():
    rgba = np.dstack([photo(), np.zeros(photo().shape[:2], np.uint8)])
    rgba[..., 3][::2] = 255
    for out in (veil.gaussian_blur(rgba, 4), veil.box_blur(rgba, 3), veil.pixelate(rgba, 9),
                veil.fill(rgba, 0), veil.add_noise(rgba, 30)):
        np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
        assert not np.array_equal(out[..., :3], rgba[..., :3])


def test_shapes_and_kinds_round_trip():
    rgb = photo()[:60, :80].copy()
    grey = rgb[..., 0].copy()
    assert veil.gaussian_blur(grey, 2).shape == (60, 80)
    assert veil.gaussian_blur(grey[..., None].copy(), 2).shape == (60, 80, 1)
    np.testing.assert_array_equal(veil.gaussian_blur(grey[..., None].copy(), 2)[..., 0], veil.gaussian_blur(grey, 2))
    for mode in ("L", "RGB", "RGBA"):
        pil = Image.fromarray(rgb).convert(mode)
        out = veil.pixelate(pil, 5)
        assert isinstance(out, Image.Image) and out.mode == mode and out.size == pil.size
    src = rgb.copy()
    veil.gaussian_blur(src, 3)
    np.testing.assert_array_equal(src, rgb)  # input untouched


def test_region_with_feather_and_ellipse():
    img = photo()
    box = (200, 100, 120, 150)
    out = veil.pixelate(img, 12, region=box, shape="ellipse", feather_px=10)
    changed = np.any(out != img, axis=2)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 200 - 11 and xs.max() <= 320 + 11 and ys.min() >= 100 - 11 and ys.max() <= 250 + 11
    assert not changed[100, 200] and not changed[249, 319]  # ellipse leaves the corners
    two = veil.gaussian_blur(img, 5, region=[(0, 0, 50, 50), (-30, 500, 100, 100)])
    assert np.any(two[:50, :50] != img[:50, :50]) and np.any(two[-40:, :60] != img[-40:, :60])


@pytest.mark.parametrize("call, exc, words", [
    (lambda a: veil.gaussian_blur(a, float("nan")), ValueError, "sigma_px"),
    (lambda a: veil.gaussian_blur(a, -1), ValueError, "sigma_px"),
    (lambda a: veil.gaussian_blur(a, 1000), ValueError, "sigma_px"),
    (lambda a: veil.box_blur(a, -3), ValueError, "radius_px"),
    (lambda a: veil.box_blur(a, 2.5), TypeError, "radius_px"),
    (lambda a: veil.pixelate(a, 0), ValueError, "block_px"),
    (lambda a: veil.pixelate(a, True), TypeError, "block_px"),
    (lambda a: veil.fill(a, (1, 2)), ValueError, "color"),
    (lambda a: veil.fill(a, (1, 2, 300)), ValueError, "color"),
    (lambda a: veil.add_noise(a, 256), ValueError, "amount"),
    (lambda a: veil.add_noise(a, 5, seed=-1), ValueError, "seed"),
    (lambda a: veil.pixelate(a, 4, region=(0, 0, 5)), ValueError, "4 values"),
    (lambda a: veil.pixelate(a, 4, region=(0, 0, -5, 5)), ValueError, "width and height"),
    (lambda a: veil.pixelate(a, 4, region=(0, float("inf"), 5, 5)), ValueError, "finite"),
    (lambda a: veil.pixelate(a, 4, region=(0, 0, 5, 5), shape="circle"), ValueError, "shape"),
    (lambda a: veil.pixelate(a, 4, region=(0, 0, 5, 5), feather_px=-2), ValueError, "feather_px"),
    (lambda a: veil.gaussian_blur(a, 2, threads=0), ValueError, "threads"),
    (lambda a: veil.gaussian_blur(a[:, ::2], 2), ValueError, "C-contiguous"),
    (lambda a: veil.gaussian_blur(a.astype(np.float32), 2), TypeError, "uint8"),
    (lambda a: veil.gaussian_blur(a[..., :2].copy(), 2), ValueError, "shape"),
    (lambda a: veil.gaussian_blur(a[:0], 2), ValueError, "empty"),
    (lambda a: veil.gaussian_blur(a.tolist(), 2), TypeError, "numpy.ndarray"),
    (lambda a: veil.gaussian_blur(Image.fromarray(a).convert("P"), 2), ValueError, "mode"),
])
def test_bad_input_names_the_problem(call, exc, words):
    with pytest.raises(exc, match=words):
        call(photo()[:40, :40].copy())


def test_many_threads_give_the_serial_result():
    img = photo()
    serial = [veil.gaussian_blur(img, s, threads=1) for s in (2, 9, 40)]
    results: dict = {}

    def work(i):
        results[i] = [veil.gaussian_blur(img, s) for s in (2, 9, 40)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        for a, b in zip(results[i], serial):
            np.testing.assert_array_equal(a, b)


images = st.builds(
    lambda h, w, c, seed: np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8),
    st.integers(1, 90), st.integers(1, 90), st.sampled_from([1, 3, 4]), st.integers(0, 2**32 - 1),
)


@settings(max_examples=60, deadline=None)
@given(img=images, sigma=st.floats(0.5, 250), radius=st.integers(0, 500), block=st.integers(1, 500),
       box=st.tuples(st.floats(-200, 200), st.floats(-200, 200), st.floats(0, 300), st.floats(0, 300)),
       threads=st.integers(1, 4))
def test_kernels_never_fail_on_valid_input(img, sigma, radius, block, box, threads):
    for out in (veil.gaussian_blur(img, sigma, threads=threads), veil.box_blur(img, radius, threads=threads),
                veil.pixelate(img, block, threads=threads), veil.pixelate(img, block, region=box, shape="ellipse"),
                veil.gaussian_blur(img, sigma, region=box, feather_px=3)):
        assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(veil.gaussian_blur(img, sigma, threads=1), veil.gaussian_blur(img, sigma, threads=threads))


@pytest.mark.parametrize("kernel, param", [(veil.gaussian_blur, 3.0), (veil.box_blur, 4), (veil.pixelate, 5)])
def test_out_receives_the_same_result_as_a_new_array(kernel, param):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    out = np.full_like(image, 17)
    result = kernel(image, param, out=out)
    assert result is out
    np.testing.assert_array_equal(out, kernel(image, param))


@pytest.mark.parametrize("kernel, param", [(veil.gaussian_blur, 3.0), (veil.box_blur, 4), (veil.pixelate, 5)])
def test_out_is_checked(kernel, param):
    image = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        kernel(image, param, out=np.zeros((20, 30, 4), np.uint8))
    with pytest.raises(TypeError):
        kernel(image, param, out=np.zeros((20, 30, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernel(image, param, out=np.zeros((30, 20, 3), np.uint8).transpose(1, 0, 2))
    with pytest.raises(ValueError):  # the input itself: numpy's borrow check or ours
        kernel(image, param, out=image)
    with pytest.raises(ValueError, match="region"):
        kernel(image, param, out=np.zeros_like(image), region=(0, 0, 5, 5))
    with pytest.raises(TypeError, match="PIL"):
        kernel(Image.fromarray(image), param, out=np.zeros_like(image))
