//! Text detection with a DB (differentiable binarization) model.
//!
//! Pre-processing: resize so both sides are multiples of 32, ImageNet normalisation in BGR order.
//! Post-processing: threshold the probability map → outer contours → minimum-area rectangle →
//! box score (mean probability inside) → unclip (polygon offset) → rectangle again → rescale.

use image::RgbImage;
use imageproc::contours::{BorderType, find_contours};
use imageproc::geometry::min_area_rect;
use imageproc::point::Point;
use ndarray::Array4;

use super::Quad;

#[derive(Clone, Debug)]
pub struct DetConfig {
    /// Pages are scaled down (never up) to at most this many pixels for detection. The
    /// default, 960 × 672, is an A4 page with its longer side at 960; measured on the sample
    /// sets (docs/models.md).
    pub max_pixels: u32,
    pub thresh: f32,
    pub box_thresh: f32,
    pub unclip_ratio: f32,
    pub max_candidates: usize,
    pub min_size: f32,
}

impl Default for DetConfig {
    fn default() -> Self {
        DetConfig {
            max_pixels: 960 * 672,
            thresh: 0.3,
            box_thresh: 0.6,
            unclip_ratio: 1.5,
            max_candidates: 1000,
            min_size: 3.0,
        }
    }
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The model input size for a `width`×`height` page: scaled down (never up) to at most
/// `max_pixels`, both sides rounded to a multiple of 32 (at least 32). An area rather than a
/// longest side: a long narrow receipt keeps the resolution of a page of the same area.
pub fn input_size(width: u32, height: u32, max_pixels: u32) -> (u32, u32) {
    let area = width as f32 * height as f32;
    let ratio = (max_pixels as f32 / area.max(1.0)).sqrt().min(1.0);
    let round32 = |v: u32| (((v as f32 * ratio) / 32.0).round() as u32 * 32).max(32);
    (round32(width), round32(height))
}

/// The page as a normalised `[1, 3, H, W]` tensor, channels in BGR order as the models expect.
/// Resized by bilinear sampling straight into the tensor (as OpenCV's `INTER_LINEAR`), with no
/// intermediate image.
pub fn preprocess(page: &RgbImage, config: &DetConfig) -> Array4<f32> {
    let (w, h) = input_size(page.width(), page.height(), config.max_pixels);
    let (src_w, src_h) = page.dimensions();
    let (sx, sy) = (src_w as f32 / w as f32, src_h as f32 / h as f32);
    let raw = page.as_raw();
    let stride = src_w as usize * 3;
    let mut input = Array4::<f32>::zeros((1, 3, h as usize, w as usize));
    // Per channel: scale and offset folding x/255, the mean and the std into one multiply-add.
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * STD[c]));
    let offset: [f32; 3] = std::array::from_fn(|c| -MEAN[c] / STD[c]);
    let columns: Vec<(usize, usize, f32)> = (0..w)
        .map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (src_w - 1) as f32);
            let x0 = fx.floor() as usize;
            (x0, (x0 + 1).min(src_w as usize - 1), fx - x0 as f32)
        })
        .collect();
    let Some(out) = input.as_slice_mut() else {
        return input;
    };
    let plane = (w * h) as usize;
    for y in 0..h as usize {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (src_h - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(src_h as usize - 1);
        let wy = fy - y0 as f32;
        let (row0, row1) = (&raw[y0 * stride..], &raw[y1 * stride..]);
        for (x, &(x0, x1, wx)) in columns.iter().enumerate() {
            for c in 0..3 {
                let top = row0[x0 * 3 + c] as f32 * (1.0 - wx) + row0[x1 * 3 + c] as f32 * wx;
                let bottom = row1[x0 * 3 + c] as f32 * (1.0 - wx) + row1[x1 * 3 + c] as f32 * wx;
                let v = top * (1.0 - wy) + bottom * wy;
                // Tensor channel 2 - c is BGR for RGB channel c.
                let t = 2 - c;
                out[t * plane + y * w as usize + x] = v * scale[t] + offset[t];
            }
        }
    }
    input
}

/// Text boxes from a `map_w`×`map_h` probability map, in the coordinates of a `page_w`×`page_h`
/// page, each as `[top-left, top-right, bottom-right, bottom-left]`.
pub fn postprocess(
    prob: &[f32],
    map_w: u32,
    map_h: u32,
    page_w: u32,
    page_h: u32,
    config: &DetConfig,
) -> Vec<Quad> {
    // A one-pixel background border: imageproc traces a blob touching the image edge as a hole,
    // while OpenCV (and so PaddleOCR) treats the outside as background.
    let bitmap = image::GrayImage::from_fn(map_w + 2, map_h + 2, |x, y| {
        let inside = (1..=map_w).contains(&x) && (1..=map_h).contains(&y);
        let on = inside && prob[((y - 1) * map_w + x - 1) as usize] > config.thresh;
        image::Luma([if on { 255 } else { 0 }])
    });
    let scale_x = page_w as f32 / map_w as f32;
    let scale_y = page_h as f32 / map_h as f32;
    let mut boxes = Vec::new();
    let contours = find_contours::<i32>(&bitmap);
    for contour in contours
        .iter()
        .filter(|c| c.border_type == BorderType::Outer && c.points.len() >= 4)
        .take(config.max_candidates)
    {
        let points: Vec<Point<i32>> = contour
            .points
            .iter()
            .map(|p| Point::new(p.x - 1, p.y - 1))
            .collect();
        let (quad, short_side) = mini_box(&points);
        if short_side < config.min_size {
            continue;
        }
        if box_score(prob, map_w, map_h, &quad) < config.box_thresh {
            continue;
        }
        let grown = unclip(&quad, config.unclip_ratio);
        if grown.len() < 3 {
            continue;
        }
        let (quad, short_side) = mini_box(&grown);
        if short_side < config.min_size + 2.0 {
            continue;
        }
        let page_quad = quad.map(|(x, y)| {
            (
                (x * scale_x).round().clamp(0.0, page_w as f32),
                (y * scale_y).round().clamp(0.0, page_h as f32),
            )
        });
        let width = dist(page_quad[0], page_quad[1]);
        let height = dist(page_quad[0], page_quad[3]);
        if width > 3.0 && height > 3.0 {
            boxes.push(page_quad);
        }
    }
    boxes
}

pub(crate) fn dist(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// The minimum-area rectangle around `points` as `[tl, tr, br, bl]`, and its shorter side.
/// Integer points, as in PaddleOCR (imageproc's hull is only reliable on integers).
fn mini_box(points: &[Point<i32>]) -> (Quad, f32) {
    let rect = min_area_rect(points);
    let corners: Quad = std::array::from_fn(|i| (rect[i].x as f32, rect[i].y as f32));
    let [tl, tr, br, bl] = super::orient::corner_order(&corners).map(|i| corners[i]);
    let short = dist(tl, tr).min(dist(tl, bl));
    ([tl, tr, br, bl], short)
}

/// Mean probability inside the quadrilateral: how sure the model is that this is text.
fn box_score(prob: &[f32], map_w: u32, map_h: u32, quad: &Quad) -> f32 {
    let (min_x, min_y, max_x, max_y) = extent(quad);
    let (x0, y0) = (min_x.floor().max(0.0) as u32, min_y.floor().max(0.0) as u32);
    let x1 = (max_x.ceil() as u32).min(map_w - 1);
    let y1 = (max_y.ceil() as u32).min(map_h - 1);
    let (mut sum, mut n) = (0.0f64, 0u32);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if inside(quad, x as f32, y as f32) {
                sum += prob[(y * map_w + x) as usize] as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

/// The quad's bounding box: `(min x, min y, max x, max y)`.
pub(crate) fn extent(quad: &Quad) -> (f32, f32, f32, f32) {
    quad.iter().fold(
        (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
        |(x0, y0, x1, y1), &(x, y)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
    )
}

/// Whether `(x, y)` lies in the convex quadrilateral (edges included).
fn inside(quad: &Quad, x: f32, y: f32) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let (ax, ay) = quad[i];
        let (bx, by) = quad[(i + 1) % 4];
        let cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
        if cross.abs() < 1e-3 {
            continue;
        }
        if sign == 0.0 {
            sign = cross.signum();
        } else if cross.signum() != sign {
            return false;
        }
    }
    true
}

/// Grows the box by `area × ratio / perimeter` on every side with round joins: DB predicts a
/// shrunk text kernel, and this restores the full text extent.
fn unclip(quad: &Quad, ratio: f32) -> Vec<Point<i32>> {
    use i_overlay::mesh::float::outline::offset::OutlineOffset;
    use i_overlay::mesh::float::style::{LineJoin, OutlineStyle};

    let area = polygon_area(quad).abs();
    let perimeter: f32 = (0..4).map(|i| dist(quad[i], quad[(i + 1) % 4])).sum();
    if perimeter <= 0.0 {
        return Vec::new();
    }
    let distance = (area * ratio / perimeter) as f64;
    let mut path: Vec<[f64; 2]> = quad.iter().map(|&(x, y)| [x as f64, y as f64]).collect();
    // The offset grows counter-clockwise (positive-area) contours.
    if polygon_area(quad) < 0.0 {
        path.reverse();
    }
    let style = OutlineStyle::new(distance).line_join(LineJoin::Round(0.2));
    path.outline(&style)
        .into_iter()
        .flatten()
        .flatten()
        .map(|[x, y]| Point::new(x.round() as i32, y.round() as i32))
        .collect()
}

fn polygon_area(quad: &Quad) -> f32 {
    0.5 * (0..4)
        .map(|i| {
            let (ax, ay) = quad[i];
            let (bx, by) = quad[(i + 1) % 4];
            ax * by - bx * ay
        })
        .sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_are_multiples_of_32() {
        let limit = 960 * 672;
        assert_eq!(input_size(1654, 2339, limit), (672, 960), "A4 at 200 dpi");
        assert_eq!(input_size(932, 2225, limit), (512, 1248), "a long receipt");
        assert_eq!(input_size(100, 20, limit), (96, 32), "never scaled up");
        assert_eq!(input_size(10, 10, limit), (32, 32));
        let (w, h) = input_size(60_000, 60_000, limit);
        assert!(w * h <= limit + 64 * 1000, "{w}×{h}");
    }

    #[test]
    fn unclip_grows_a_box_on_every_side() {
        let quad: Quad = [(10.0, 10.0), (110.0, 10.0), (110.0, 30.0), (10.0, 30.0)];
        let grown = unclip(&quad, 1.5);
        let (big, _) = mini_box(&grown);
        // d = 100*20*1.5 / 240 = 12.5
        assert!(
            (big[0].0 - -2.5).abs() < 0.6 && (big[0].1 - -2.5).abs() < 0.6,
            "{big:?}"
        );
        assert!(
            (big[2].0 - 122.5).abs() < 0.6 && (big[2].1 - 42.5).abs() < 0.6,
            "{big:?}"
        );
    }

    /// A 64×32 probability map with one text blob over `xs` × rows 10..16.
    fn blob_map(xs: std::ops::Range<u32>) -> (Vec<f32>, u32, u32) {
        let (w, h) = (64u32, 32u32);
        let mut prob = vec![0.0f32; (w * h) as usize];
        for y in 10..16 {
            for x in xs.clone() {
                prob[(y * w + x) as usize] = 0.9;
            }
        }
        (prob, w, h)
    }

    #[test]
    fn finds_text_touching_the_edge() {
        let (prob, w, h) = blob_map(0..40);
        let boxes = postprocess(&prob, w, h, w, h, &DetConfig::default());
        assert_eq!(boxes.len(), 1);
        assert_eq!(boxes[0][0].0, 0.0, "{:?}", boxes[0]);
    }

    #[test]
    fn finds_one_box_per_blob() {
        let (prob, w, h) = blob_map(8..40);
        let boxes = postprocess(&prob, w, h, w * 2, h * 2, &DetConfig::default());
        assert_eq!(boxes.len(), 1);
        let [tl, tr, br, bl] = boxes[0];
        assert!(
            tl.0 < 16.0 && tl.1 < 20.0 && br.0 > 78.0 && br.1 > 30.0,
            "{:?}",
            boxes[0]
        );
        assert!(tr.0 > tl.0 && bl.1 > tl.1);
    }
}
