//! Which way the page's text runs: its orientation (0, 90, 180 or 270 degrees) and its skew.
//!
//! Boxes are kept in the page as given; orientation decides which corner of each is the start of
//! its text (the recogniser samples the line straight from the page along that direction), and
//! skew only straightens the geometry that reading order is computed on. So word boxes are always
//! on the image as given, and a skewed or upside-down page costs no extra detection. Only a page
//! turned sideways is detected again, upright: the detector finds vertical lines less reliably.

use super::Quad;
use crate::ocr::BBox;

/// The reading frame of a page: the image turned clockwise by `rotation` degrees, then rotated
/// by `-angle` so that its text lines run level.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// 0, 90, 180 or 270: the clockwise turn that makes the page upright.
    pub rotation: u16,
    /// The text direction in the upright page, in radians, y down: positive when lines fall
    /// to the right.
    pub angle: f32,
    width: f32,
    height: f32,
}

impl Frame {
    /// The upright frame of a `width`×`height` page turned by `rotation`, not yet deskewed.
    pub fn new(rotation: u16, width: u32, height: u32) -> Frame {
        Frame {
            rotation: rotation % 360,
            angle: 0.0,
            width: width as f32,
            height: height as f32,
        }
    }

    /// The page's skew in degrees, counter-clockwise positive (as image editors rotate): the
    /// rotation that would make its lines level is the opposite.
    pub fn skew_degrees(&self) -> f32 {
        -self.angle.to_degrees()
    }

    /// A page point in the upright (turned, not deskewed) page.
    pub fn upright(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let (w, h) = (self.width, self.height);
        match self.rotation {
            90 => (h - y, x),
            180 => (w - x, h - y),
            270 => (y, w - x),
            _ => (x, y),
        }
    }

    /// The page point at `(u, v)` in the upright page: the inverse of [`Frame::upright`].
    pub fn page(&self, (u, v): (f32, f32)) -> (f32, f32) {
        let (w, h) = (self.width, self.height);
        match self.rotation {
            90 => (v, h - u),
            180 => (w - u, h - v),
            270 => (w - v, u),
            _ => (u, v),
        }
    }

    /// A page point in the level frame: upright, then rotated about the origin so that the
    /// text runs along x. Reading order compares positions only, so the origin does not matter.
    fn level(&self, p: (f32, f32)) -> (f32, f32) {
        let (x, y) = self.upright(p);
        let (sin, cos) = self.angle.sin_cos();
        (x * cos + y * sin, -x * sin + y * cos)
    }

    /// The quad's corners reordered so that, in the upright page, corner 0 is its top left and
    /// the text runs from corner 0 to corner 1. Coordinates stay those of the page as given.
    pub fn orient(&self, quad: &Quad) -> Quad {
        let upright = quad.map(|p| self.upright(p));
        corner_order(&upright).map(|i| quad[i])
    }

    /// The box of a page quad in the level frame, for reading order: shifted by `offset` (the
    /// page diagonal) so that no coordinate is negative.
    pub fn level_box(&self, quad: &Quad) -> BBox {
        let offset = self.width.hypot(self.height);
        let points = quad.map(|p| self.level(p));
        let (x0, y0, x1, y1) = super::det::extent(&points);
        let at = |v: f32| (v + offset).max(0.0).round() as u32;
        BBox::new(at(x0), at(y0), at(x1), at(y1))
    }
}

/// Indices of `[top-left, top-right, bottom-right, bottom-left]` among a rectangle's corners:
/// the two leftmost are the left edge, the upper of each pair is on top (as PaddleOCR orders).
pub fn corner_order(points: &Quad) -> [usize; 4] {
    let mut by_x = [0, 1, 2, 3];
    by_x.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    let upper_first = |a: usize, b: usize| {
        if points[a].1 <= points[b].1 {
            (a, b)
        } else {
            (b, a)
        }
    };
    let (tl, bl) = upper_first(by_x[0], by_x[1]);
    let (tr, br) = upper_first(by_x[2], by_x[3]);
    [tl, tr, br, bl]
}

/// A box's long side length, and whether it runs more vertically than horizontally; `None` for
/// boxes too square to tell (single characters, dots).
fn direction(quad: &Quad) -> Option<(f32, bool)> {
    let [a, b, _, d] = *quad;
    let (side1, side2) = ((b.0 - a.0, b.1 - a.1), (d.0 - a.0, d.1 - a.1));
    let (l1, l2) = (side1.0.hypot(side1.1), side2.0.hypot(side2.1));
    let (long, short, v) = if l1 >= l2 {
        (l1, l2, side1)
    } else {
        (l2, l1, side2)
    };
    (long >= 2.0 * short).then_some((long, v.1.abs() > v.0.abs()))
}

/// Whether most of the page's text (by line length) runs up or down rather than across: a
/// page turned by 90 or 270 degrees.
pub fn sideways(quads: &[Quad]) -> bool {
    let (mut vertical, mut horizontal) = (0.0f32, 0.0f32);
    for (long, is_vertical) in quads.iter().filter_map(direction) {
        match is_vertical {
            true => vertical += long,
            false => horizontal += long,
        }
    }
    vertical > horizontal
}

/// The text direction of oriented quads (text from corner 0 to corner 1) in `frame`'s upright
/// page, in radians: the length-weighted median angle of the clearly line-shaped boxes.
/// Zero when there are none.
pub fn text_angle(frame: &Frame, quads: &[Quad]) -> f32 {
    let mut angles: Vec<(f32, f32)> = quads
        .iter()
        .filter_map(|q| {
            let (a, b, d) = (
                frame.upright(q[0]),
                frame.upright(q[1]),
                frame.upright(q[3]),
            );
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let length = dx.hypot(dy);
            let height = (d.0 - a.0).hypot(d.1 - a.1);
            // Lines at least three times as long as high; words and numbers give noisy angles.
            (length >= 3.0 * height && dx > 0.0).then(|| (dy.atan2(dx), length))
        })
        .collect();
    if angles.is_empty() {
        return 0.0;
    }
    angles.sort_by(|a, b| a.0.total_cmp(&b.0));
    let half = angles.iter().map(|a| a.1).sum::<f32>() / 2.0;
    let mut seen = 0.0;
    for (angle, weight) in &angles {
        seen += weight;
        if seen >= half {
            return *angle;
        }
    }
    angles[angles.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x0: f32, y0: f32, x1: f32, y1: f32) -> Quad {
        [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    }

    #[test]
    fn turning_maps_points_onto_the_upright_page() {
        // A 100×200 page: turned by 90 it is 200×100, its top-left going to the top right.
        let p = (10.0, 20.0);
        assert_eq!(Frame::new(0, 100, 200).upright(p), (10.0, 20.0));
        assert_eq!(Frame::new(90, 100, 200).upright(p), (180.0, 10.0));
        assert_eq!(Frame::new(180, 100, 200).upright(p), (90.0, 180.0));
        assert_eq!(Frame::new(270, 100, 200).upright(p), (20.0, 90.0));
        for rotation in [0, 90, 180, 270] {
            let frame = Frame::new(rotation, 100, 200);
            assert_eq!(frame.page(frame.upright(p)), p, "{rotation}");
        }
    }

    #[test]
    fn orienting_puts_the_start_of_the_text_first() {
        // A vertical line on a page turned 90 degrees counter-clockwise: its text runs upwards,
        // so it starts at the bottom left in the page as given.
        let quad = rect(10.0, 50.0, 30.0, 150.0);
        let oriented = Frame::new(90, 100, 200).orient(&quad);
        assert_eq!(oriented[0], (10.0, 150.0));
        assert_eq!(oriented[1], (10.0, 50.0));
        let upside_down = Frame::new(180, 100, 200).orient(&rect(10.0, 10.0, 90.0, 30.0));
        assert_eq!(upside_down[0], (90.0, 30.0));
    }

    #[test]
    fn sideways_pages_are_those_whose_lines_run_vertically() {
        let across = [rect(0.0, 0.0, 300.0, 20.0), rect(0.0, 40.0, 280.0, 60.0)];
        let down = [rect(0.0, 0.0, 20.0, 300.0), rect(40.0, 0.0, 60.0, 280.0)];
        assert!(!sideways(&across));
        assert!(sideways(&down));
        // Square boxes (dots, single letters) say nothing.
        assert!(!sideways(&[rect(0.0, 0.0, 20.0, 20.0)]));
    }

    #[test]
    fn the_text_angle_is_the_median_of_the_lines() {
        let tilted = |y: f32, degrees: f32| -> Quad {
            let (s, c) = degrees.to_radians().sin_cos();
            let (w, h) = (400.0, 20.0);
            let a = (10.0, y);
            [
                a,
                (a.0 + w * c, a.1 + w * s),
                (a.0 + w * c - h * s, a.1 + w * s + h * c),
                (a.0 - h * s, a.1 + h * c),
            ]
        };
        let frame = Frame::new(0, 1000, 1000);
        let quads = [tilted(10.0, 2.0), tilted(50.0, 2.1), tilted(90.0, 1.9)];
        let angle = text_angle(&frame, &quads).to_degrees();
        assert!((angle - 2.0).abs() < 0.01, "{angle}");
        let mut level = frame;
        level.angle = angle.to_radians();
        assert!((level.skew_degrees() + 2.0).abs() < 0.01);
        // In the level frame the lines' boxes are as high as the lines.
        let b = level.level_box(&quads[0]);
        assert!(b.height() <= 22, "{b:?}");
    }
}
