//! The OLED as a PNG file, rewritten atomically whenever the picture changes.

use super::{FrameBuffer, HEIGHT, WIDTH};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How many image pixels show one OLED pixel unless told otherwise: 512x256 images.
pub const DEFAULT_PNG_SCALE: u32 = 4;

/// Encodes `frame` as an 8-bit grayscale PNG, white on black like the OLED, each pixel
/// drawn as a `scale` x `scale` square.
pub fn encode_png(frame: &FrameBuffer, scale: u32) -> io::Result<Vec<u8>> {
    let scale = scale.max(1);
    let (width, height) = (WIDTH * scale, HEIGHT * scale);
    let mut pixels = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        for x in 0..width {
            pixels.push(if frame.is_on(x / scale, y / scale) {
                0xff
            } else {
                0
            });
        }
    }
    let mut file = Vec::new();
    let mut encoder = png::Encoder::new(&mut file, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    writer.write_image_data(&pixels).map_err(io::Error::other)?;
    writer.finish().map_err(io::Error::other)?;
    Ok(file)
}

/// Keeps a PNG file showing the OLED: rewritten when the picture changed, through a
/// temporary file renamed over it so that a reader never sees half an image.
#[derive(Debug)]
pub struct PngDisplay {
    path: PathBuf,
    temporary: PathBuf,
    scale: u32,
    written: Option<FrameBuffer>,
}

impl PngDisplay {
    /// A display writing `path`, [`DEFAULT_PNG_SCALE`] image pixels per OLED pixel.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut name = std::ffi::OsString::from(".");
        name.push(path.file_name().unwrap_or_else(|| "oled.png".as_ref()));
        name.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(name);
        Self {
            path,
            temporary,
            scale: DEFAULT_PNG_SCALE,
            written: None,
        }
    }

    /// Draws each OLED pixel as a `scale` x `scale` square.
    pub fn with_scale(mut self, scale: u32) -> Self {
        self.scale = scale.max(1);
        self
    }

    /// The file this display keeps up to date.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `frame` if it differs from the file; returns whether it wrote.
    pub fn show(&mut self, frame: &FrameBuffer) -> io::Result<bool> {
        if self.written.as_ref() == Some(frame) {
            return Ok(false);
        }
        self.write(frame)?;
        Ok(true)
    }

    fn write(&mut self, frame: &FrameBuffer) -> io::Result<()> {
        let image = encode_png(frame, self.scale)?;
        let written = fs::write(&self.temporary, image)
            .and_then(|()| fs::rename(&self.temporary, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&self.temporary);
            return Err(io::Error::new(
                e.kind(),
                format!("write {}: {e}", self.path.display()),
            ));
        }
        self.written = Some(frame.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::pixelcolor::BinaryColor;
    use embedded_graphics::prelude::{Drawable, Pixel, Point};

    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        pixels.truncate(info.buffer_size());
        (info, pixels)
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("echo-std-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn png_shows_lit_pixels_white_on_black_at_scale() {
        let mut frame = FrameBuffer::new();
        Pixel(Point::new(3, 2), BinaryColor::On)
            .draw(&mut frame)
            .unwrap();
        let (info, pixels) = decode(&encode_png(&frame, 2).unwrap());
        assert_eq!((info.width, info.height), (256, 128));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let at = |x: usize, y: usize| pixels[y * 256 + x];
        for (x, y) in [(6, 4), (7, 4), (6, 5), (7, 5)] {
            assert_eq!(at(x, y), 0xff, "({x}, {y})");
        }
        assert_eq!(at(5, 4), 0);
        assert_eq!(at(8, 5), 0);
        assert_eq!(pixels.iter().filter(|&&p| p != 0).count(), 4);
    }

    #[test]
    fn rewrites_the_file_only_when_the_picture_changes() {
        let dir = scratch_dir("png-changes");
        let path = dir.join("oled.png");
        let mut display = PngDisplay::new(&path);
        let mut frame = FrameBuffer::new();
        display.show(&frame).unwrap();
        let first = fs::metadata(&path).unwrap().modified().unwrap();
        fs::remove_file(&path).unwrap();
        display.show(&frame).unwrap();
        assert!(!path.exists(), "unchanged picture rewritten");
        Pixel(Point::new(127, 63), BinaryColor::On)
            .draw(&mut frame)
            .unwrap();
        display.show(&frame).unwrap();
        let (info, pixels) = decode(&fs::read(&path).unwrap());
        assert_eq!((info.width, info.height), (512, 256));
        assert_eq!(pixels[512 * 256 - 1], 0xff);
        assert!(fs::metadata(&path).unwrap().modified().unwrap() >= first);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name != "oled.png")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let mut display = PngDisplay::new("/nonexistent-dir/oled.png");
        let error = display.show(&FrameBuffer::new()).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent-dir/oled.png"),
            "{error}"
        );
    }
}
