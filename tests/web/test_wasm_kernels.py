"""The WebAssembly build of veil-core, run in Chromium, gives the same pixels
as the Python extension (the same Rust core, native) on the same input.

The integer kernels (pixelate, box blur, fill, noise) must agree exactly. The
Gaussian blur and region compositing are float code written to round alike
on every target (no fused multiply-add), so they are expected to agree
exactly too.
"""

from __future__ import annotations

import numpy as np
import pytest

import veil

SHAPES = [(37, 53, 4), (29, 41, 3), (16, 9, 1)]

RUN_IN_PAGE = """async ({ data, width, height, channels, calls }) => {
  const { loadVeil } = await import('./veil-wasm.js');
  const veil = await loadVeil(new URL('./veil_wasm.wasm', location.href));
  const results = [];
  for (const call of calls) {
    const src = veil.imageFrom(data, width, height, channels);
    const dst = veil.createImage(width, height, channels);
    try {
      switch (call.kernel) {
        case 'pixelate': veil.pixelate(src, dst, call.block_px, call.origin_x ?? 0, call.origin_y ?? 0); break;
        case 'box_blur': veil.boxBlur(src, dst, call.radius_px); break;
        case 'gaussian_blur': veil.gaussianBlur(src, dst, call.sigma_px); break;
        case 'fill': dst.copyFrom(src); veil.fill(dst, call.color); break;
        case 'add_noise': dst.copyFrom(src); veil.addNoise(dst, call.amount, call.seed); break;
        case 'regions': dst.copyFrom(src); veil.applyToRegions(dst, call.method, call.regions); break;
        default: throw new Error('unknown kernel ' + call.kernel);
      }
      results.push(Array.from(dst.data));
    } catch (e) {
      results.push({ error: e.name + ': ' + e.message, code: e.codeName });
    } finally {
      src.free();
      dst.free();
    }
  }
  return results;
}"""


def run_in_page(page, image: np.ndarray, calls: list) -> list:
    h, w = image.shape[:2]
    c = image.shape[2] if image.ndim == 3 else 1
    out = page.evaluate(RUN_IN_PAGE, {"data": image.ravel().tolist(), "width": w, "height": h, "channels": c,
                                      "calls": calls})
    return [r if isinstance(r, dict) else np.array(r, dtype=np.uint8).reshape(image.shape) for r in out]


def python_result(image: np.ndarray, call: dict) -> np.ndarray:
    k = call["kernel"]
    if k == "pixelate":
        return veil.pixelate(image, call["block_px"])
    if k == "box_blur":
        return veil.box_blur(image, call["radius_px"])
    if k == "gaussian_blur":
        return veil.gaussian_blur(image, call["sigma_px"])
    if k == "fill":
        return veil.fill(image, tuple(call["color"]) if len(call["color"]) == 3 else call["color"][0])
    if k == "add_noise":
        return veil.add_noise(image, call["amount"], seed=call["seed"])
    if k == "regions":
        m, r = call["method"], call["regions"][0]
        box = (r["left"], r["top"], r["width"], r["height"])
        kw = dict(region=box, shape=r["shape"], feather_px=r["featherPx"])
        if m["kind"] == "pixelate":
            return veil.pixelate(image, m["blockPx"], **kw)
        if m["kind"] == "gaussian":
            return veil.gaussian_blur(image, m["sigmaPx"], **kw)
        if m["kind"] == "box":
            return veil.box_blur(image, m["radiusPx"], **kw)
        if m["kind"] == "noise":
            return veil.add_noise(image, m["amount"], seed=m["seed"], **kw)
    raise AssertionError(k)


def calls_for(channels: int) -> list:
    color = [12, 200, 99] if channels != 1 else [77]
    region = {"left": 5.5, "top": 3.25, "width": 30.0, "height": 20.0, "shape": "ellipse", "featherPx": 3.0}
    return [
        {"kernel": "pixelate", "block_px": 1},
        {"kernel": "pixelate", "block_px": 7},
        {"kernel": "pixelate", "block_px": 64},
        {"kernel": "box_blur", "radius_px": 0},
        {"kernel": "box_blur", "radius_px": 3},
        {"kernel": "box_blur", "radius_px": 10},
        {"kernel": "box_blur", "radius_px": 40},
        {"kernel": "fill", "color": color},
        {"kernel": "add_noise", "amount": 40, "seed": 1234567},
        {"kernel": "gaussian_blur", "sigma_px": 1.5},
        {"kernel": "gaussian_blur", "sigma_px": 3.0},
        {"kernel": "gaussian_blur", "sigma_px": 12.0},
        {"kernel": "regions", "method": {"kind": "pixelate", "blockPx": 5}, "regions": [region]},
        {"kernel": "regions", "method": {"kind": "gaussian", "sigmaPx": 4.0}, "regions": [region]},
        {"kernel": "regions", "method": {"kind": "box", "radiusPx": 2}, "regions": [{**region, "shape": "rectangle"}]},
        {"kernel": "regions", "method": {"kind": "noise", "amount": 30, "seed": 99}, "regions": [region]},
    ]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_wasm_kernels_match_python(page, shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    if shape[2] == 1:
        image = image[:, :, 0]  # Python takes H x W grey; the page gets the same bytes
    calls = calls_for(shape[2])
    got = run_in_page(page, image, calls)
    for call, wasm in zip(calls, got):
        assert not isinstance(wasm, dict), (call, wasm)
        expected = python_result(image, call)
        if not np.array_equal(wasm, expected):
            d = np.abs(wasm.astype(int) - expected.astype(int))
            pytest.fail(f"{call}: wasm and Python differ at {int((d > 0).sum())} values, by up to {d.max()}")


def test_wasm_errors_carry_the_core_message(page):
    image = np.zeros((4, 4, 4), np.uint8)
    got = run_in_page(page, image, [
        {"kernel": "pixelate", "block_px": 0},
        {"kernel": "gaussian_blur", "sigma_px": 1000},
        {"kernel": "fill", "color": [1, 2]},
    ])
    assert got[0] == {"error": "VeilError: block_px: must be at least 1", "code": "INVALID_PARAMETER"}
    assert got[1]["code"] == "INVALID_PARAMETER" and "sigma_px" in got[1]["error"]
    assert got[2]["code"] == "INVALID_PARAMETER" and "color" in got[2]["error"]


def test_wasm_refuses_aliasing_and_freed_images_and_keeps_working(page):
    got = page.evaluate("""async () => {
      const { loadVeil } = await import('./veil-wasm.js');
      const veil = await loadVeil(new URL('./veil_wasm.wasm', location.href));
      const out = {};
      const grab = (name, fn) => { try { fn(); out[name] = 'ok'; } catch (e) { out[name] = e.name + ' ' + e.codeName + ': ' + e.message; } };
      const a = veil.imageFrom(new Uint8Array(4 * 4 * 4).fill(200), 4, 4, 4);
      const b = veil.createImage(4, 4, 4);
      const c = veil.createImage(5, 4, 4);
      grab('same', () => veil.gaussianBlur(a, a, 1));
      grab('shape', () => veil.boxBlur(a, c, 1));
      grab('bad', () => veil.pixelate(a, b, 0));
      // After the failures above, the same images still work.
      grab('after', () => veil.pixelate(a, b, 2));
      out.pixels = Array.from(b.data.slice(0, 4));
      c.free();
      grab('freed', () => veil.fill(c, [1, 2, 3]));
      a.free();
      b.free();
      out.shared = (await loadVeil()) === veil;
      return out;
    }""")
    assert got["same"] == "VeilError INVALID_PARAMETER: dst: must be a different image from src"
    assert got["shape"] == "VeilError INVALID_IMAGE: images differ in shape: 4x4x4 and 5x4x4"
    assert got["bad"] == "VeilError INVALID_PARAMETER: block_px: must be at least 1"
    assert got["after"] == "ok" and got["pixels"] == [200, 200, 200, 200]
    assert got["freed"] == "VeilError INVALID_PARAMETER: image: this image is freed"
    assert got["shared"] is True
