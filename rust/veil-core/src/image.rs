//! Borrowed views of 8-bit interleaved images (rows packed, no padding).

use crate::error::{Result, VeilError};

/// How many of an image's channels carry colour. Alpha (the 4th channel of
/// RGBA) is never changed by veil's kernels: colour is processed everywhere,
/// including under transparent pixels, so dropping the alpha channel of an
/// output reveals nothing that the visible image hides.
pub fn colour_channels(channels: usize) -> usize {
    if channels == 4 { 3 } else { channels }
}

fn check_shape(len: usize, width: usize, height: usize, channels: usize) -> Result<()> {
    if !matches!(channels, 1 | 3 | 4) {
        return Err(VeilError::InvalidImage(format!(
            "images must have 1, 3 or 4 channels, got {channels}"
        )));
    }
    if width == 0 || height == 0 {
        return Err(VeilError::InvalidImage(format!("image is empty ({width}x{height})")));
    }
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .ok_or_else(|| VeilError::InvalidImage("image dimensions overflow".into()))?;
    if len != expected {
        return Err(VeilError::InvalidImage(format!(
            "buffer holds {len} bytes, a {width}x{height}x{channels} image needs {expected}"
        )));
    }
    Ok(())
}

/// A read-only image.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

impl<'a> ImageRef<'a> {
    pub fn new(data: &'a [u8], width: usize, height: usize, channels: usize) -> Result<Self> {
        check_shape(data.len(), width, height, channels)?;
        Ok(Self { data, width, height, channels })
    }
    pub fn row_len(&self) -> usize {
        self.width * self.channels
    }
    pub fn row(&self, y: usize) -> &'a [u8] {
        let n = self.row_len();
        &self.data[y * n..(y + 1) * n]
    }
}

/// An image changed in place.
#[derive(Debug)]
pub struct ImageMut<'a> {
    pub data: &'a mut [u8],
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

impl<'a> ImageMut<'a> {
    pub fn new(data: &'a mut [u8], width: usize, height: usize, channels: usize) -> Result<Self> {
        check_shape(data.len(), width, height, channels)?;
        Ok(Self { data, width, height, channels })
    }
    pub fn row_len(&self) -> usize {
        self.width * self.channels
    }
    pub fn as_ref(&self) -> ImageRef<'_> {
        ImageRef { data: self.data, width: self.width, height: self.height, channels: self.channels }
    }
}

/// An owned image, used for crops and intermediate results.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

impl Image {
    pub fn new(width: usize, height: usize, channels: usize) -> Result<Self> {
        let len = width.saturating_mul(height).saturating_mul(channels);
        check_shape(len, width, height, channels)?;
        Ok(Self { data: vec![0; len], width, height, channels })
    }
    pub fn from_vec(data: Vec<u8>, width: usize, height: usize, channels: usize) -> Result<Self> {
        check_shape(data.len(), width, height, channels)?;
        Ok(Self { data, width, height, channels })
    }
    pub fn view(&self) -> ImageRef<'_> {
        ImageRef { data: &self.data, width: self.width, height: self.height, channels: self.channels }
    }
    pub fn view_mut(&mut self) -> ImageMut<'_> {
        ImageMut { data: &mut self.data, width: self.width, height: self.height, channels: self.channels }
    }
}
