//! JPEG decoding with libjpeg-turbo's own decoder, so that the pixels are the
//! ones Pillow (and through it Keras' `load_img`) sees.
//!
//! Pure-Rust decoders round differently: zune-jpeg, which the `image` crate
//! uses, differs from libjpeg-turbo's `jpeg_idct_islow` by one level on about
//! 0.6% of the luma plane and by up to two on as much as 8% of a chroma plane.
//! That moved the reference faces' probabilities by up to 5e-3, far outside
//! the 1e-5 of the parity tests. The `mozjpeg` crate builds the C decoder of
//! MozJPEG, which is libjpeg-turbo's unchanged (MozJPEG only changes the
//! encoder), with the defaults Pillow keeps: the accurate integer IDCT and
//! "fancy" (triangle-filter) chroma upsampling.
//!
//! libjpeg reports a fatal error by calling `error_exit`, which must not
//! return. The `mozjpeg-sys` C code is compiled with unwinding support, so the
//! handler here unwinds with the error as payload and [`decode`] catches it;
//! the unwinding drops the decoder, which frees libjpeg's memory. This needs
//! the default `panic = "unwind"`: built with `panic = "abort"`, a corrupt
//! JPEG aborts the process.

use std::ffi::{CStr, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, DctMethod, Decompress};
use mozjpeg_sys::{JWRN_JPEG_EOF, jpeg_common_struct, jpeg_error_mgr};

/// libjpeg's `JMSG_LENGTH_MAX`: `format_message` writes up to this many bytes.
const MESSAGE_CAPACITY: usize = 200;

/// The most decoded bytes a file may ask for: the `image` crate's default
/// allocation limit, which guards the PNG and BMP decoders the same way. A
/// JPEG header of a few bytes can declare 65,500 x 65,500 pixels.
const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// Whether `bytes` start like a JPEG file: the SOI marker and the first byte of
/// the next marker, the test Pillow's `JpegImagePlugin` uses.
pub(super) fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xff, 0xd8, 0xff])
}

/// Why a JPEG file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JpegFailure {
    /// libjpeg rejected the data; its message says why and where
    /// ("Premature end of JPEG file", "Unsupported marker type 0x..").
    Corrupt(String),
    /// A valid JPEG in a colour space other than grayscale, YCbCr or RGB
    /// (CMYK, YCCK), which Pillow would open in a mode this project has no
    /// use for.
    UnsupportedColorSpace(ColorSpace),
    /// The header declares an image larger than [`MAX_DECODED_BYTES`].
    TooLarge {
        /// Declared width in pixels.
        width: usize,
        /// Declared height in pixels.
        height: usize,
    },
}

/// Decodes a whole JPEG file held in memory: 8-bit grayscale files to
/// [`DynamicImage::ImageLuma8`], YCbCr and RGB ones to
/// [`DynamicImage::ImageRgb8`], byte for byte as libjpeg-turbo 2.x and 3.x
/// decode them with their default settings.
///
/// A file that ends before its image does is an error, as in Pillow. Other
/// recoverable damage that libjpeg only warns about (stray bytes before a
/// marker, say) is decoded as libjpeg decodes it, as Pillow does too.
pub(super) fn decode(bytes: &[u8]) -> Result<DynamicImage, JpegFailure> {
    match catch_unwind(AssertUnwindSafe(|| decode_unguarded(bytes))) {
        Ok(result) => result,
        Err(payload) => match payload.downcast::<LibjpegError>() {
            Ok(error) => Err(JpegFailure::Corrupt(error.0)),
            // Not ours: a bug elsewhere, which should go on unwinding.
            Err(payload) => resume_unwind(payload),
        },
    }
}

/// The unwinding payload of [`exit_with_error`]: libjpeg's formatted message.
struct LibjpegError(String);

fn decode_unguarded(bytes: &[u8]) -> Result<DynamicImage, JpegFailure> {
    let corrupt = |error: std::io::Error| JpegFailure::Corrupt(error.to_string());
    let mut decompress = Decompress::with_err(error_manager())
        .from_mem(bytes)
        .map_err(corrupt)?;
    // libjpeg's defaults, and Pillow's unless it is asked for a draft.
    decompress.dct_method(DctMethod::IntegerSlow);
    decompress.do_fancy_upsampling(true);
    let gray = match decompress.color_space() {
        ColorSpace::JCS_GRAYSCALE => true,
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => false,
        other => return Err(JpegFailure::UnsupportedColorSpace(other)),
    };
    // Checked against the limit before anything is allocated; within it,
    // both sides fit the `u32` of an image buffer.
    let (width, height) = decompress.size();
    let channels = if gray { 1 } else { 3 };
    let too_large = JpegFailure::TooLarge { width, height };
    if (width as u64) * (height as u64) * channels > MAX_DECODED_BYTES {
        return Err(too_large);
    }
    let (Ok(columns), Ok(rows)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(too_large);
    };
    let mut started = if gray {
        decompress.grayscale()
    } else {
        decompress.rgb()
    }
    .map_err(corrupt)?;
    let samples: Vec<u8> = started.read_scanlines().map_err(corrupt)?;
    started.finish().map_err(corrupt)?;
    let short =
        || JpegFailure::Corrupt("the decoder gave fewer rows than the header declares".into());
    if gray {
        GrayImage::from_raw(columns, rows, samples)
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(short)
    } else {
        RgbImage::from_raw(columns, rows, samples)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(short)
    }
}

/// libjpeg's standard error manager with its two reporting hooks replaced:
/// errors unwind instead of calling `exit()`, and nothing is printed.
fn error_manager() -> jpeg_error_mgr {
    // SAFETY: `jpeg_error_mgr` is a C struct of integers, raw pointers and
    // `Option`s of function pointers, for all of which zero bytes are a valid
    // value (0, null, `None`).
    let mut manager: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: `jpeg_std_error` only fills in the struct it is given, which is
    // valid and exclusively borrowed; the message table it points it to is
    // static.
    unsafe { mozjpeg_sys::jpeg_std_error(&mut manager) };
    manager.error_exit = Some(exit_with_error);
    manager.emit_message = Some(on_message);
    manager
}

/// libjpeg's `error_exit`: called on a fatal error, it must not return.
extern "C-unwind" fn exit_with_error(cinfo: &mut jpeg_common_struct) {
    resume_unwind(Box::new(LibjpegError(message(cinfo))))
}

/// libjpeg's `emit_message`: warnings (level -1) and trace messages. Running
/// out of data is a warning to libjpeg, which pads the rest of the image with
/// grey; Pillow reports such a file as truncated, and so does this.
extern "C-unwind" fn on_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg calls this with the `cinfo` whose `err` is the manager
    // from `error_manager`, which the decoder owns for as long as it lives.
    let code = unsafe { cinfo.err.as_ref() }.map(|manager| manager.msg_code);
    if level < 0 && code == Some(JWRN_JPEG_EOF as c_int) {
        exit_with_error(cinfo);
    }
}

/// The current message of libjpeg's error manager, formatted by libjpeg.
fn message(cinfo: &mut jpeg_common_struct) -> String {
    // SAFETY: as in `on_message`, `err` is our live manager (or null).
    let Some(format) = (unsafe { cinfo.err.as_ref() }).and_then(|m| m.format_message) else {
        return "unknown libjpeg error".into();
    };
    // SAFETY: libjpeg declares `format_message` as `void (*)(j_common_ptr,
    // char *buffer)`. mozjpeg-sys binds the buffer as `&[u8; 80]`, which has
    // the same ABI (one pointer) but is read-only and too short: the function
    // writes up to JMSG_LENGTH_MAX bytes. So it is called through the C
    // signature, with a mutable buffer of that size.
    let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut c_char) =
        unsafe { std::mem::transmute(format) };
    let mut buffer = [0 as c_char; MESSAGE_CAPACITY];
    // SAFETY: `cinfo` is the live decoder libjpeg handed us and `buffer` holds
    // JMSG_LENGTH_MAX bytes; libjpeg's `snprintf` writes at most that many,
    // terminating zero included.
    unsafe { format(cinfo, buffer.as_mut_ptr()) };
    // The last byte stays zero, so a terminator is always found.
    let bytes: Vec<u8> = buffer.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|text| text.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown libjpeg error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_jpeg_signature_is_recognised() {
        assert!(is_jpeg(&[0xff, 0xd8, 0xff, 0xe0]));
        assert!(!is_jpeg(&[0xff, 0xd8]));
        assert!(!is_jpeg(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn a_bad_frame_header_is_libjpegs_error_not_a_panic() {
        // SOI, then a baseline frame header of 16x16 pixels in no components.
        let jpeg = [0xff, 0xd8, 0xff, 0xc0, 0, 8, 8, 0, 16, 0, 16, 0];
        let failure = decode(&jpeg).unwrap_err();
        let JpegFailure::Corrupt(message) = failure else {
            panic!("{failure:?}");
        };
        assert!(message.contains("Empty JPEG image"), "{message}");
    }

    /// A JPEG of `pixels` in `color_space`, encoded by the same library.
    fn encode(color_space: ColorSpace, width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
        let mut compress = mozjpeg::Compress::new(color_space);
        compress.set_size(width, height);
        compress.set_quality(100.0);
        let mut started = compress.start_compress(Vec::new()).expect("start");
        started.write_scanlines(pixels).expect("write");
        started.finish().expect("finish")
    }

    /// A smooth 24x16 pattern that survives quality-100 compression closely.
    fn gradient(width: usize, height: usize) -> Vec<u8> {
        (0..height)
            .flat_map(|y| (0..width).map(move |x| (40 + 5 * x + 3 * y) as u8))
            .collect()
    }

    /// Lossy coding moves each sample a little, a misplaced one a lot.
    fn assert_close(decoded: &[u8], sent: &[u8], tolerance: u8) {
        assert_eq!(decoded.len(), sent.len());
        for (index, (&got, &sent)) in decoded.iter().zip(sent).enumerate() {
            assert!(
                got.abs_diff(sent) <= tolerance,
                "sample {index}: {got} against {sent}"
            );
        }
    }

    #[test]
    fn a_grayscale_jpeg_stays_gray_and_keeps_its_pixels() {
        let (width, height) = (24, 16);
        let pixels = gradient(width, height);
        let jpeg = encode(ColorSpace::JCS_GRAYSCALE, width, height, &pixels);
        let DynamicImage::ImageLuma8(decoded) = decode(&jpeg).expect("decode") else {
            panic!("a grayscale JPEG must decode to 8-bit gray");
        };
        assert_eq!(decoded.dimensions(), (24, 16));
        assert_close(decoded.as_raw(), &pixels, 2);
    }

    #[test]
    fn a_colour_jpeg_decodes_to_rgb_in_row_order() {
        // Red grows along x and blue along y, so a transposed or channel-swapped
        // decode shows.
        let (width, height) = (24, 16);
        let pixels: Vec<u8> = (0..height)
            .flat_map(|y| {
                (0..width).flat_map(move |x| [(40 + 8 * x) as u8, 128, (40 + 8 * y) as u8])
            })
            .collect();
        let jpeg = encode(ColorSpace::JCS_RGB, width, height, &pixels);
        let DynamicImage::ImageRgb8(decoded) = decode(&jpeg).expect("decode") else {
            panic!("a colour JPEG must decode to 8-bit RGB");
        };
        assert_eq!(decoded.dimensions(), (24, 16));
        assert_close(decoded.as_raw(), &pixels, 6);
    }

    #[test]
    fn a_cmyk_jpeg_is_refused_by_its_colour_space() {
        let jpeg = encode(ColorSpace::JCS_CMYK, 8, 8, &[100; 8 * 8 * 4]);
        assert_eq!(
            decode(&jpeg).unwrap_err(),
            JpegFailure::UnsupportedColorSpace(ColorSpace::JCS_CMYK)
        );
    }

    #[test]
    fn a_truncated_jpeg_is_an_error_not_grey_padding() {
        let (width, height) = (24, 16);
        let jpeg = encode(
            ColorSpace::JCS_GRAYSCALE,
            width,
            height,
            &gradient(width, height),
        );
        assert!(decode(&jpeg).is_ok());
        let failure = decode(&jpeg[..jpeg.len() - 40]).unwrap_err();
        assert_eq!(
            failure,
            JpegFailure::Corrupt("Premature end of JPEG file".into())
        );
    }

    #[test]
    fn a_header_declaring_a_huge_image_is_refused_before_decoding() {
        let mut jpeg = encode(ColorSpace::JCS_GRAYSCALE, 8, 8, &[100; 64]);
        // The frame header: FF C0 (baseline) or FF C2 (progressive, MozJPEG's
        // default), length (2 bytes), precision (1), height (2), width (2).
        let frame = jpeg
            .windows(2)
            .position(|marker| marker == [0xff, 0xc0] || marker == [0xff, 0xc2])
            .expect("a frame header");
        // 60,000 x 60,000 (libjpeg's own limit is 65,500): 3.4 GiB of gray.
        jpeg[frame + 5..frame + 9].copy_from_slice(&[0xea, 0x60, 0xea, 0x60]);
        assert_eq!(
            decode(&jpeg).unwrap_err(),
            JpegFailure::TooLarge {
                width: 60000,
                height: 60000
            }
        );
    }

    #[test]
    fn a_file_without_an_image_is_an_error() {
        let failure = decode(&[0xff, 0xd8, 0xff, 0xd9]).unwrap_err();
        assert!(matches!(failure, JpegFailure::Corrupt(_)), "{failure:?}");
    }
}
