//! Every page of a TIFF, one at a time, converted to 8-bit RGB.

use std::io::BufReader;

use image::RgbImage;
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult};

use super::{DocumentError, Limits, check_size};

pub struct TiffPages {
    decoder: Decoder<BufReader<std::fs::File>>,
    limits: Limits,
    page: usize,
    done: bool,
}

fn bad(e: tiff::TiffError) -> DocumentError {
    match e {
        tiff::TiffError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DocumentError::Undecodable("the file is truncated".into())
        }
        e => DocumentError::Undecodable(e.to_string()),
    }
}

impl TiffPages {
    pub fn new(
        reader: BufReader<std::fs::File>,
        limits: Limits,
    ) -> Result<TiffPages, DocumentError> {
        let mut tiff_limits = tiff::decoder::Limits::default();
        tiff_limits.decoding_buffer_size =
            (limits.max_pixels.saturating_mul(8)).min(usize::MAX as u64) as usize;
        let mut decoder = Decoder::new(reader).map_err(bad)?.with_limits(tiff_limits);
        let (width, height) = decoder.dimensions().map_err(bad)?;
        check_size(width, height, &limits)?;
        Ok(TiffPages {
            decoder,
            limits,
            page: 0,
            done: false,
        })
    }

    fn read_page(&mut self) -> Result<RgbImage, DocumentError> {
        if self.page > 0 {
            self.decoder.next_image().map_err(bad)?;
        }
        self.page += 1;
        if self.page > self.limits.max_pages {
            return Err(DocumentError::TooManyPages(self.limits.max_pages));
        }
        let (width, height) = self.decoder.dimensions().map_err(bad)?;
        check_size(width, height, &self.limits)?;
        let color = self.decoder.colortype().map_err(bad)?;
        let data = self.decoder.read_image().map_err(bad)?;
        to_rgb(width, height, color, data)
    }
}

impl Iterator for TiffPages {
    type Item = Result<RgbImage, DocumentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.page > 0 && !self.decoder.more_images()) {
            return None;
        }
        let page = self.read_page();
        // After an error the decoder's position is unknown: stop there.
        self.done = page.is_err();
        Some(page)
    }
}

fn to_rgb(
    width: u32,
    height: u32,
    color: ColorType,
    data: DecodingResult,
) -> Result<RgbImage, DocumentError> {
    let n = width as usize * height as usize;
    let samples: Vec<u8> = match data {
        DecodingResult::U8(v) => v,
        // Keep the high byte of 16-bit samples.
        DecodingResult::U16(v) => v.into_iter().map(|s| (s >> 8) as u8).collect(),
        _ => {
            return Err(DocumentError::Undecodable(format!(
                "unsupported TIFF sample format ({color:?})"
            )));
        }
    };
    let rgb: Vec<u8> = match color {
        ColorType::Gray(1) => {
            // Bilevel rows are packed 8 pixels a byte, each row padded to a whole byte.
            let row_bytes = (width as usize).div_ceil(8);
            let mut out = Vec::with_capacity(n * 3);
            for y in 0..height as usize {
                for x in 0..width as usize {
                    let byte = samples.get(y * row_bytes + x / 8).copied().unwrap_or(0);
                    let v = if byte & (0x80 >> (x % 8)) != 0 {
                        255
                    } else {
                        0
                    };
                    out.extend_from_slice(&[v, v, v]);
                }
            }
            out
        }
        ColorType::Gray(8 | 16) => samples.iter().flat_map(|&v| [v, v, v]).collect(),
        ColorType::GrayA(8 | 16) => samples
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        ColorType::RGB(8 | 16) => samples,
        ColorType::RGBA(8 | 16) => samples
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        ColorType::CMYK(8) => samples
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - p[3] as u16;
                let f = |c: u8| ((255 - c as u16) * k / 255) as u8;
                [f(p[0]), f(p[1]), f(p[2])]
            })
            .collect(),
        other => {
            return Err(DocumentError::Undecodable(format!(
                "unsupported TIFF colour type {other:?}"
            )));
        }
    };
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| {
        DocumentError::Undecodable("TIFF page has fewer samples than its size".into())
    })
}
