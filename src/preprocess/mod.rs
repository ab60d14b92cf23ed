//! Turning a photo into the network's input exactly as the reference demo
//! (`oarriaga/face_classification`, `src/image_emotion_gender_demo.py`) does.
//!
//! The demo's steps, each reproduced here byte for byte:
//!
//! 1. [`load_gray`] / [`to_gray`]: Pillow's `Image.open(path).convert('L')`,
//!    JPEG decoded by libjpeg-turbo's code as in Pillow.
//! 2. [`crop`]: `apply_offsets` followed by numpy slicing `gray[y1:y2, x1:x2]`.
//! 3. [`resize_linear`]: OpenCV 4.10's `cv2.resize(crop, (W, H))` with the
//!    default `INTER_LINEAR`.
//! 4. [`normalize`] / [`to_input`]: `preprocess_input(x, v2=True)`.
//!
//! Byte-exact parity matters because the reference cases in
//! `shared/reference/` store the resized `uint8` faces; anything less than
//! exact would make those cases useless for checking this pipeline.

mod crop;
mod gray;
mod jpeg;
mod load;
mod resize;

pub use crop::crop;
pub use gray::{rgb_to_gray, to_gray};
pub use load::{ImageError, decode_image, load_gray, load_image};
pub use resize::{ResizeError, resize_linear};

use image::GrayImage;

use crate::runtime::Tensor;

/// The demo's `preprocess_input(x, v2=True)` for one pixel:
/// `((value / 255) - 0.5) * 2`, every step rounded to `f32` in that order as
/// numpy does on its `float32` array. The result is in `[-1, 1]`.
pub fn normalize(value: u8) -> f32 {
    (f32::from(value) / 255.0 - 0.5) * 2.0
}

/// The network input for a grayscale face crop: resized to `W` x `H` with
/// [`resize_linear`] (skipped when the crop already has that size, as OpenCV
/// copies then) and [`normalize`]d, one channel.
///
/// Fails only for an empty crop or a size too large for an image.
pub fn to_input<const H: usize, const W: usize>(
    gray: &GrayImage,
) -> Result<Box<Tensor<H, W, 1>>, ResizeError> {
    let too_large = ResizeError::TargetTooLarge {
        width: W,
        height: H,
    };
    let width = u32::try_from(W).map_err(|_| too_large)?;
    let height = u32::try_from(H).map_err(|_| too_large)?;
    let resized;
    let pixels = if gray.dimensions() == (width, height) {
        gray
    } else {
        resized = resize_linear(gray, width, height)?;
        &resized
    };
    let mut input = Tensor::<H, W, 1>::zeroed_boxed();
    for (value, &pixel) in input.as_mut_slice().iter_mut().zip(pixels.as_raw()) {
        *value = normalize(pixel);
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_maps_the_ends_and_the_middle() {
        assert_eq!(normalize(0), -1.0);
        assert_eq!(normalize(255), 1.0);
        assert!(normalize(128) > 0.0 && normalize(127) < 0.0);
    }
}
