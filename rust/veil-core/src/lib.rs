//! veil-core: the numeric heart of veil, with no bindings. The Python
//! extension (`rust/veil-py`) and the WebAssembly module (`rust/veil-wasm`)
//! are thin skins over these functions.
//!
//! Images are 8-bit, interleaved, with 1, 3 or 4 channels, rows packed.

pub mod error;
pub mod image;
pub mod parallel;
mod simd;

pub mod blur;
pub mod cloak;
pub mod detect;
pub mod fill;
pub mod pixelate;
pub mod region;

pub use error::{Result, VeilError};
pub use image::{Image, ImageMut, ImageRef};
