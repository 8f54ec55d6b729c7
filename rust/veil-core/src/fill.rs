//! Solid fill and seeded noise.
//!
//! Noise is what makes blur and pixelation hard to invert: deblurring and
//! super-resolution attacks (McPherson et al. 2016; diffusion deblurring)
//! exploit that a blur is a known linear map of the face. Uniform noise of
//! a few tens of levels added after it destroys the low-amplitude detail
//! those attacks recover. It is seeded so a run can be reproduced, and each
//! pixel's noise depends only on the seed and the pixel's position, so the
//! result does not depend on thread count or on which region came first.

use crate::error::{Result, VeilError};
use crate::image::{colour_channels, ImageMut};

/// Sets the colour channels of every pixel to `color` (one value per colour
/// channel: 1 for grey images, 3 for RGB and RGBA). Alpha is kept.
pub fn fill(image: ImageMut, color: &[u8]) -> Result<()> {
    let c = image.channels;
    let cc = colour_channels(c);
    if color.len() != cc {
        return Err(VeilError::param(
            "color",
            format!("needs {cc} value(s) for a {c}-channel image, got {}", color.len()),
        ));
    }
    for px in image.data.chunks_exact_mut(c) {
        px[..cc].copy_from_slice(color);
    }
    Ok(())
}

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a fast, well-mixed hash
/// of a 64-bit counter.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The noise value for one channel of one pixel, uniform in `-amount..=amount`.
#[inline(always)]
pub fn noise_at(seed: u64, x: u64, y: u64, channel: usize, amount: u8) -> i32 {
    let bits = mix(seed ^ mix((y << 32) ^ x));
    let byte = (bits >> (8 * channel)) as u8 as u32;
    let span = 2 * amount as u32 + 1;
    ((byte * span) >> 8) as i32 - amount as i32
}

/// Adds uniform noise in `-amount..=amount` to the colour channels, saturating.
/// `origin` is the position of the buffer's top-left pixel within the whole
/// photo, so that a crop gets the same noise as the photo would.
pub fn add_noise(image: ImageMut, amount: u8, seed: u64, origin: (usize, usize)) -> Result<()> {
    let (w, c) = (image.width, image.channels);
    let cc = colour_channels(c);
    for (i, px) in image.data.chunks_exact_mut(c).enumerate() {
        let (x, y) = ((origin.0 + i % w) as u64, (origin.1 + i / w) as u64);
        for (ch, v) in px[..cc].iter_mut().enumerate() {
            *v = (*v as i32 + noise_at(seed, x, y, ch, amount)).clamp(0, 255) as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    #[test]
    fn fill_keeps_alpha() {
        let mut img = Image::from_vec(vec![1, 2, 3, 40, 5, 6, 7, 80], 2, 1, 4).unwrap();
        fill(img.view_mut(), &[9, 8, 7]).unwrap();
        assert_eq!(img.data, vec![9, 8, 7, 40, 9, 8, 7, 80]);
    }

    #[test]
    fn fill_wrong_colour_length() {
        let mut img = Image::new(2, 2, 3).unwrap();
        assert!(fill(img.view_mut(), &[1]).is_err());
        assert!(fill(img.view_mut(), &[1, 2, 3, 4]).is_err());
        let mut grey = Image::new(2, 2, 1).unwrap();
        fill(grey.view_mut(), &[7]).unwrap();
        assert_eq!(grey.data, vec![7; 4]);
    }

    #[test]
    fn noise_is_bounded_centred_and_seeded() {
        let amount = 20u8;
        let mut hist = vec![0u32; 41];
        for y in 0..200u64 {
            for x in 0..200u64 {
                let n = noise_at(7, x, y, 1, amount);
                assert!((-20..=20).contains(&n));
                hist[(n + 20) as usize] += 1;
            }
        }
        // Every value occurs, none much more often than uniform (40000/41 ~ 976).
        assert!(hist.iter().all(|&h| h > 700 && h < 1300), "{hist:?}");
        let a: Vec<i32> = (0..64).map(|x| noise_at(1, x, 0, 0, amount)).collect();
        let b: Vec<i32> = (0..64).map(|x| noise_at(2, x, 0, 0, amount)).collect();
        assert_ne!(a, b, "different seeds give different noise");
    }

    #[test]
    fn noise_of_a_crop_equals_noise_of_the_photo() {
        let mut whole = Image::from_vec(vec![128; 8 * 6 * 3], 8, 6, 3).unwrap();
        add_noise(whole.view_mut(), 30, 99, (0, 0)).unwrap();
        let mut crop = Image::from_vec(vec![128; 3 * 2 * 3], 3, 2, 3).unwrap();
        add_noise(crop.view_mut(), 30, 99, (4, 3)).unwrap();
        for y in 0..2 {
            let a = &whole.data[((3 + y) * 8 + 4) * 3..((3 + y) * 8 + 7) * 3];
            assert_eq!(a, &crop.data[y * 9..(y + 1) * 9]);
        }
    }
}
