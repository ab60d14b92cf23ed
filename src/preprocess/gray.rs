//! Pillow's conversions of decoded images to 8-bit grayscale.

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Pixel};

/// Converts any decoded image to 8-bit grayscale exactly as Pillow's
/// `convert('L')` does.
///
/// - RGB and RGBA: ITU-R 601-2 luma in Pillow's 16-bit fixed point,
///   `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`; alpha is ignored, as in
///   Pillow's RGBA to L conversion.
/// - 8-bit gray is returned unchanged; gray with alpha keeps the gray channel.
/// - 16-bit images follow what Pillow does when it opens a 16-bit PNG and
///   then converts it: RGB, RGBA and gray-with-alpha keep the high byte of
///   each sample (Pillow unpacks them to 8 bits on load), then convert as
///   above. 16-bit gray opens as Pillow's `I;16` mode, whose conversion to `L`
///   **clips** at 255 rather than scaling, so values above 255 become white.
///   That clipping is faithful to Pillow, not a sensible tone mapping.
/// - Floating-point images (which the compiled-in decoders never produce) go
///   through the `image` crate's own 8-bit RGB conversion first.
pub fn to_gray(image: &DynamicImage) -> GrayImage {
    match image {
        DynamicImage::ImageLuma8(gray) => gray.clone(),
        DynamicImage::ImageLumaA8(gray_alpha) => map_pixels(gray_alpha, |p| p.0[0]),
        DynamicImage::ImageRgb8(rgb) => rgb_to_gray(rgb),
        DynamicImage::ImageRgba8(rgba) => map_pixels(rgba, |p| pillow_luma(p.0[0], p.0[1], p.0[2])),
        DynamicImage::ImageLuma16(gray) => map_pixels(gray, |p| clip_to_u8(p.0[0])),
        DynamicImage::ImageLumaA16(gray_alpha) => map_pixels(gray_alpha, |p| high_byte(p.0[0])),
        DynamicImage::ImageRgb16(rgb) => map_pixels(rgb, |p| {
            pillow_luma(high_byte(p.0[0]), high_byte(p.0[1]), high_byte(p.0[2]))
        }),
        DynamicImage::ImageRgba16(rgba) => map_pixels(rgba, |p| {
            pillow_luma(high_byte(p.0[0]), high_byte(p.0[1]), high_byte(p.0[2]))
        }),
        other => map_pixels(&other.to_rgb8(), |p| pillow_luma(p.0[0], p.0[1], p.0[2])),
    }
}

/// [`to_gray`] of an 8-bit RGB image (a decoded video frame, say), without
/// wrapping it in a [`DynamicImage`].
pub fn rgb_to_gray(rgb: &image::RgbImage) -> GrayImage {
    let mut gray = GrayImage::new(rgb.width(), rgb.height());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { lumas_avx2(rgb.as_raw(), &mut gray) };
        return gray;
    }
    lumas(rgb.as_raw(), &mut gray);
    gray
}

/// [`pillow_luma`] of each pixel of packed RGB `samples` into `gray`.
#[inline(always)]
fn lumas(samples: &[u8], gray: &mut [u8]) {
    for (out, pixel) in gray.iter_mut().zip(samples.chunks_exact(3)) {
        if let &[red, green, blue] = pixel {
            *out = pillow_luma(red, green, blue);
        }
    }
}

/// [`lumas`] compiled for AVX2, which the compiler vectorises (32-bit
/// products eight at a time); the baseline x86-64 build has no 32-bit
/// vector multiply, so it would convert every video frame a pixel at a time.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lumas_avx2(samples: &[u8], gray: &mut [u8]) {
    lumas(samples, gray);
}

/// Pillow's `L24` macro: the 601-2 weights 0.299, 0.587, 0.114 scaled by 2^16
/// (they sum to exactly 65536, so white stays 255), rounded by adding half.
#[inline(always)]
fn pillow_luma(red: u8, green: u8, blue: u8) -> u8 {
    let weighted =
        u32::from(red) * 19595 + u32::from(green) * 38470 + u32::from(blue) * 7471 + 0x8000;
    // At most 255 * 65536 + 0x8000, so the shifted value fits in a u8.
    u8::try_from(weighted >> 16).unwrap_or(u8::MAX)
}

/// Pillow's 16-to-8-bit unpacking on load keeps the most significant byte.
fn high_byte(sample: u16) -> u8 {
    sample.to_be_bytes()[0]
}

/// Pillow's `I;16` to `L` conversion saturates instead of scaling.
fn clip_to_u8(sample: u16) -> u8 {
    u8::try_from(sample).unwrap_or(u8::MAX)
}

fn map_pixels<P: Pixel>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    to_luma: impl Fn(&P) -> u8,
) -> GrayImage {
    let mut gray = GrayImage::new(image.width(), image.height());
    for (out, pixel) in gray.pixels_mut().zip(image.pixels()) {
        *out = Luma([to_luma(pixel)]);
    }
    gray
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorised conversion gives each pixel `pillow_luma`, for every
    /// value of each channel with the others at 0, 128 and 255, and on an
    /// odd width whose pixels do not fill the vectors.
    #[test]
    fn the_avx2_conversion_is_the_pixel_formula() {
        let mut samples = Vec::new();
        for fixed in [0_u8, 128, 255] {
            for value in 0..=255_u8 {
                samples.extend([
                    value, fixed, fixed, fixed, value, fixed, fixed, fixed, value,
                ]);
            }
        }
        let pixels = samples.len() / 3 - 1;
        let samples = &samples[..pixels * 3];
        let expected: Vec<u8> = samples
            .chunks_exact(3)
            .map(|pixel| pillow_luma(pixel[0], pixel[1], pixel[2]))
            .collect();
        // On a CPU with AVX2 this takes `lumas_avx2`.
        let rgb = image::RgbImage::from_raw(pixels as u32, 1, samples.to_vec()).unwrap();
        assert_eq!(rgb_to_gray(&rgb).into_raw(), expected);
    }

    #[test]
    fn pillow_luma_matches_the_l24_formula_at_the_primaries() {
        // (255 * weight + 0x8000) >> 16 for each weight, worked by hand.
        assert_eq!(pillow_luma(255, 0, 0), 76);
        assert_eq!(pillow_luma(0, 255, 0), 150);
        assert_eq!(pillow_luma(0, 0, 255), 29);
        assert_eq!(pillow_luma(255, 255, 255), 255);
        assert_eq!(pillow_luma(0, 0, 0), 0);
        // 100*19595 + 150*38470 + 200*7471 + 32768 = 9256968 = 141.25 * 65536.
        assert_eq!(pillow_luma(100, 150, 200), 141);
    }

    #[test]
    fn pillow_luma_rounds_rather_than_truncates() {
        // 1*19595 + 32768 = 52363 < 65536 -> 0, but 2*19595 + 32768 = 71958 -> 1:
        // truncating R*299/1000 would give 0 for both.
        assert_eq!(pillow_luma(1, 0, 0), 0);
        assert_eq!(pillow_luma(2, 0, 0), 1);
        // Gray inputs survive unchanged because the weights sum to 65536.
        for value in 0..=255 {
            assert_eq!(pillow_luma(value, value, value), value);
        }
    }

    #[test]
    fn sixteen_bit_images_convert_as_pillow_does() {
        let gray16 = DynamicImage::ImageLuma16(
            ImageBuffer::from_raw(3, 1, vec![7_u16, 255, 256]).expect("size"),
        );
        assert_eq!(to_gray(&gray16).as_raw(), &[7, 255, 255]);
        let rgb16 = DynamicImage::ImageRgb16(
            ImageBuffer::from_raw(1, 1, vec![0xff00_u16, 0x00ff, 0x0000]).expect("size"),
        );
        assert_eq!(to_gray(&rgb16).as_raw(), &[pillow_luma(0xff, 0x00, 0x00)]);
    }

    #[test]
    fn alpha_is_ignored() {
        let rgba = DynamicImage::ImageRgba8(
            ImageBuffer::from_raw(2, 1, vec![10, 20, 30, 0, 10, 20, 30, 255]).expect("size"),
        );
        let expected = pillow_luma(10, 20, 30);
        assert_eq!(to_gray(&rgba).as_raw(), &[expected, expected]);
    }
}
