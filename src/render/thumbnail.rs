//! A small JPEG of a document's first page, for lists and the task page.

use std::path::Path;

use crate::document::{DocumentError, Limits, Password};

/// Longest side of a thumbnail, in pixels: sharp at 2× on a 120-pixel tile.
pub const MAX_SIDE: u32 = 240;
pub const MEDIA_TYPE: &str = "image/jpeg";
/// The result key's extension: `result.thumb.jpg` beside the results.
pub const EXTENSION: &str = "thumb.jpg";

/// The first page of `source`, shrunk and encoded as JPEG.
pub fn render(
    source: &Path,
    limits: Limits,
    password: Option<Password>,
) -> Result<Vec<u8>, DocumentError> {
    let image = crate::document::page_image(source, 1, limits, password, MAX_SIDE)?
        .ok_or_else(|| DocumentError::Undecodable("the document has no pages".into()))?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&image)
        .map_err(|e| DocumentError::Undecodable(e.to_string()))?;
    Ok(jpeg)
}
