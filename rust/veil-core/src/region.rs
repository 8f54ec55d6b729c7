//! Applying a method to regions of a photo (the faces), under a rectangle
//! or ellipse mask with a feathered edge.
//!
//! The region itself is always covered completely; the feather lies
//! *outside* it, fading from full effect at the region's edge to none at
//! `feather_px` beyond. (A feather inside the region would leave part of the
//! face half-visible.) Regions may cross or lie outside the image border:
//! only the part inside is changed. The method sees the pixels around the
//! region (a blur needs its neighbours), never pixels outside the image.

use crate::blur::{box_blur, gaussian_blur, MAX_SIGMA_PX, MIN_SIGMA_PX};
use crate::error::{check_range, Result, VeilError};
use crate::fill::{add_noise, fill};
use crate::image::{colour_channels, Image, ImageMut};
use crate::pixelate::pixelate;

/// Largest feather accepted, in pixels.
pub const MAX_FEATHER_PX: f64 = 10_000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Rectangle,
    /// The ellipse inscribed in the region's box.
    Ellipse,
}

/// A part of the photo to anonymize, in pixels of the photo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub shape: Shape,
    pub feather_px: f64,
}

impl Region {
    pub fn new(left: f64, top: f64, width: f64, height: f64, shape: Shape, feather_px: f64) -> Self {
        Self { left, top, width, height, shape, feather_px }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("region left", self.left), ("region top", self.top)] {
            if !v.is_finite() || v.abs() > 1e9 {
                return Err(VeilError::param("region", format!("{name} must be a finite number of pixels, got {v}")));
            }
        }
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if !v.is_finite() || !(0.0..=1e9).contains(&v) {
                return Err(VeilError::param("region", format!("region {name} must be >= 0 pixels, got {v}")));
            }
        }
        check_range("feather_px", self.feather_px, 0.0, MAX_FEATHER_PX)
    }

    /// How strongly the method applies at point (x, y): 1 inside the region,
    /// falling smoothly to 0 at `feather_px` outside it.
    pub fn weight_at(&self, x: f64, y: f64) -> f32 {
        let distance = match self.shape {
            Shape::Rectangle => {
                let dx = (self.left - x).max(x - (self.left + self.width)).max(0.0);
                let dy = (self.top - y).max(y - (self.top + self.height)).max(0.0);
                dx.hypot(dy)
            }
            Shape::Ellipse => {
                let (a, b) = (self.width / 2.0, self.height / 2.0);
                if a <= 0.0 || b <= 0.0 {
                    return 0.0;
                }
                let (dx, dy) = (x - (self.left + a), y - (self.top + b));
                let rho = ((dx / a).powi(2) + (dy / b).powi(2)).sqrt();
                if rho <= 1.0 {
                    0.0
                } else {
                    // Distance to the boundary along the ray from the centre.
                    dx.hypot(dy) * (1.0 - 1.0 / rho)
                }
            }
        };
        if distance <= 0.0 {
            return 1.0;
        }
        if distance >= self.feather_px {
            return 0.0;
        }
        // Smoothstep: no visible ring where the feather starts or ends.
        let t = 1.0 - distance / self.feather_px;
        (t * t * (3.0 - 2.0 * t)) as f32
    }

    /// Pixels whose centres the region (with its feather) can touch, clipped
    /// to the image: `(x0, y0, x1, y1)`, end exclusive; `None` if empty.
    fn pixel_bounds(&self, width: usize, height: usize) -> Option<(usize, usize, usize, usize)> {
        if self.width <= 0.0 || self.height <= 0.0 {
            return None;
        }
        let f = self.feather_px;
        let clip = |v: f64, len: usize| v.clamp(0.0, len as f64) as usize;
        let x0 = clip((self.left - f - 0.5).floor(), width);
        let y0 = clip((self.top - f - 0.5).floor(), height);
        let x1 = clip((self.left + self.width + f + 0.5).ceil(), width);
        let y1 = clip((self.top + self.height + f + 0.5).ceil(), height);
        (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
    }
}

/// What to do to a region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    GaussianBlur { sigma_px: f64 },
    BoxBlur { radius_px: usize },
    /// Block means on a grid anchored at the region's top-left corner.
    Pixelate { block_px: usize },
    /// RGB colour; grey images get its luma.
    Fill { color: [u8; 3] },
    /// Uniform noise in `-amount..=amount`, seeded.
    Noise { amount: u8, seed: u64 },
}

impl Method {
    fn validate(&self) -> Result<()> {
        match *self {
            Method::GaussianBlur { sigma_px } => check_range("sigma_px", sigma_px, MIN_SIGMA_PX, MAX_SIGMA_PX),
            Method::Pixelate { block_px: 0 } => Err(VeilError::param("block_px", "must be at least 1")),
            _ => Ok(()),
        }
    }

    /// How far beyond a region the method reads pixels.
    fn context_px(&self) -> usize {
        match *self {
            Method::GaussianBlur { sigma_px } => (4.0 * sigma_px).ceil() as usize + 1,
            Method::BoxBlur { radius_px } => radius_px,
            _ => 0,
        }
    }
}

/// Applies `method` to each region in turn (later regions see the result of
/// earlier ones where they overlap). Everything is checked before any pixel
/// changes, so an error leaves the image as it was.
pub fn apply_to_regions(image: ImageMut, method: &Method, regions: &[Region], threads: usize) -> Result<()> {
    method.validate()?;
    for region in regions {
        region.validate()?;
    }
    let (w, h, c) = (image.width, image.height, image.channels);
    for region in regions {
        let Some((ax0, ay0, ax1, ay1)) = region.pixel_bounds(w, h) else { continue };
        // The crop the method works on: the touched pixels plus the context
        // the method reads, or for pixelation the whole blocks they lie in.
        let (cx0, cy0, cx1, cy1) = match *method {
            Method::Pixelate { block_px } => {
                let b = block_px as i64;
                let (gx, gy) = (region.left.floor() as i64, region.top.floor() as i64);
                let start = |v: usize, g: i64| (v as i64 - (v as i64 - g).rem_euclid(b)).max(0) as usize;
                let end = |v: usize, g: i64, len: usize| (start(v - 1, g) + block_px).min(len);
                (start(ax0, gx), start(ay0, gy), end(ax1, gx, w), end(ay1, gy, h))
            }
            _ => {
                let pad = method.context_px();
                (ax0.saturating_sub(pad), ay0.saturating_sub(pad), (ax1 + pad).min(w), (ay1 + pad).min(h))
            }
        };
        let (cw, ch) = (cx1 - cx0, cy1 - cy0);
        let mut crop = Image::new(cw, ch, c)?;
        for y in 0..ch {
            let s = ((cy0 + y) * w + cx0) * c;
            crop.data[y * cw * c..(y + 1) * cw * c].copy_from_slice(&image.data[s..s + cw * c]);
        }
        let processed = run_method(&crop, method, region, (cx0, cy0), threads)?;
        // Composite the processed crop back under the region's mask.
        let cc = colour_channels(c);
        for y in ay0..ay1 {
            for x in ax0..ax1 {
                let a = region.weight_at(x as f64 + 0.5, y as f64 + 0.5);
                if a <= 0.0 {
                    continue;
                }
                let d = (y * w + x) * c;
                let s = ((y - cy0) * cw + (x - cx0)) * c;
                for ch in 0..cc {
                    let (old, new) = (image.data[d + ch] as f32, processed.data[s + ch] as f32);
                    image.data[d + ch] = (old + a * (new - old) + 0.5) as u8;
                }
            }
        }
    }
    Ok(())
}

fn run_method(crop: &Image, method: &Method, region: &Region, origin: (usize, usize), threads: usize) -> Result<Image> {
    let mut out = crop.clone();
    match *method {
        Method::GaussianBlur { sigma_px } => gaussian_blur(crop.view(), &mut out.data, sigma_px, threads)?,
        Method::BoxBlur { radius_px } => box_blur(crop.view(), &mut out.data, radius_px, threads)?,
        Method::Pixelate { block_px } => {
            let ox = region.left.floor() as i64 - origin.0 as i64;
            let oy = region.top.floor() as i64 - origin.1 as i64;
            pixelate(crop.view(), &mut out.data, block_px, ox, oy, threads)?
        }
        Method::Fill { color } => {
            let luma = [((299 * color[0] as u32 + 587 * color[1] as u32 + 114 * color[2] as u32 + 500) / 1000) as u8];
            let colour: &[u8] = if colour_channels(crop.channels) == 1 { &luma } else { &color };
            fill(out.view_mut(), colour)?
        }
        Method::Noise { amount, seed } => add_noise(out.view_mut(), amount, seed, origin)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
