//! Image bytes → RGB8, with EXIF orientation applied and a pixel budget.

use crate::FaceError;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use std::io::Cursor;

/// Default pixel budget: 40 megapixels (a 12 MP phone photo fits with room).
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Decodes JPEG, PNG, WebP or BMP bytes into upright RGB8.
///
/// Gray, 16-bit, alpha (dropped, not composited) and CMYK inputs become RGB8.
/// The header is checked against `max_pixels` before any pixel is decoded, so
/// a small file that declares a huge image costs nothing.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, FaceError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| FaceError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(FaceError::Decode("unknown or unsupported image format".into()));
    }
    let mut reader = reader;
    // Our own budget is checked below; the decoder's default limit would
    // reject a huge header with a less specific error first.
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| FaceError::Decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    let (width, height) = (w as u64, h as u64);
    if width == 0 || height == 0 {
        return Err(FaceError::Empty);
    }
    if width * height > max_pixels {
        return Err(FaceError::TooLarge { width, height, limit: max_pixels });
    }
    let mut limits = Limits::default();
    // Room for the decoded image at 16 bits × 4 channels plus decoder scratch.
    limits.max_alloc = Some(max_pixels * 8 + (64 << 20));
    decoder.set_limits(limits).map_err(|e| FaceError::Decode(e.to_string()))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| FaceError::Decode(e.to_string()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.to_rgb8())
}

/// Reads and decodes an image file.
pub fn load_image(path: &std::path::Path, max_pixels: u64) -> Result<RgbImage, FaceError> {
    let bytes = std::fs::read(path).map_err(|source| FaceError::Io { path: path.to_path_buf(), source })?;
    decode_image(&bytes, max_pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb};

    fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    #[test]
    fn formats_and_pixel_types_become_rgb8() {
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 3, Rgb([10, 20, 30])));
        for fmt in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::WebP] {
            let img = decode_image(&encode(&rgb, fmt), DEFAULT_MAX_PIXELS).unwrap();
            assert_eq!(img.get_pixel(1, 1).0, [10, 20, 30], "{fmt:?}");
        }
        let jpeg = decode_image(&encode(&rgb, ImageFormat::Jpeg), DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((jpeg.width(), jpeg.height()), (4, 3));
        let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(2, 2, image::Luma([65535u16])));
        assert_eq!(decode_image(&encode(&gray16, ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap().get_pixel(0, 0).0, [255; 3]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(2, 2, image::Rgba([1, 2, 3, 0])));
        assert_eq!(decode_image(&encode(&rgba, ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap().get_pixel(0, 0).0, [1, 2, 3]);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(matches!(decode_image(b"", DEFAULT_MAX_PIXELS), Err(FaceError::Decode(_))));
        assert!(matches!(decode_image(b"hello, this is text not a jpeg", DEFAULT_MAX_PIXELS), Err(FaceError::Decode(_))));
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([9, 9, 9])));
        let jpeg = encode(&rgb, ImageFormat::Jpeg);
        assert!(decode_image(&jpeg[..jpeg.len() / 2], DEFAULT_MAX_PIXELS).is_err(), "truncated JPEG");
        assert!(matches!(decode_image(&jpeg, 100), Err(FaceError::TooLarge { .. })));
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_decoding() {
        // A PNG header declaring 100,000 × 100,000 pixels, no data behind it.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        let crc = crc32(&png[12..]);
        png.extend_from_slice(&crc.to_be_bytes());
        // A few bytes of image data and the end marker: small file, huge promise.
        for (kind, body) in [(&b"IDAT"[..], &[0x78u8, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01][..]), (&b"IEND"[..], &[][..])] {
            png.extend_from_slice(&(body.len() as u32).to_be_bytes());
            let start = png.len();
            png.extend_from_slice(kind);
            png.extend_from_slice(body);
            let crc = crc32(&png[start..]);
            png.extend_from_slice(&crc.to_be_bytes());
        }
        let r = decode_image(&png, DEFAULT_MAX_PIXELS);
        assert!(matches!(r, Err(FaceError::TooLarge { width: 100_000, .. })), "{r:?}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in data {
            crc ^= *b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
