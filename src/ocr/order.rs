//! Reading order: detected line pieces → blocks of lines, as a person reads them.
//!
//! Columns are found from the page itself: a vertical strip that (almost) no piece crosses, with
//! plenty of text on both sides, is a gutter. Pieces that cross it (titles, page numbers, wide
//! tables) break the flow; between them, the left column is read before the right one, and each
//! column may split again. Inside a column, pieces on the same row are joined left to right, so a
//! table is read row by row.

use super::{BBox, Block, Line, Word};

/// A detected and recognised stretch of text on one row.
#[derive(Clone, Debug)]
pub struct Piece {
    pub bbox: BBox,
    pub words: Vec<Word>,
}

/// Arranges the pieces of a page into blocks in reading order.
pub fn layout(pieces: Vec<Piece>) -> Vec<Block> {
    let mut blocks = Vec::new();
    flow(pieces, &mut blocks);
    blocks
}

/// Sets every line's box to its words' and every block's to its lines': for pieces whose boxes
/// were given in another frame than their words' (a skewed page is ordered level).
pub fn fit_boxes(blocks: &mut [Block]) {
    for block in blocks {
        for line in &mut block.lines {
            line.bbox = BBox::union(line.words.iter().map(|w| w.bbox)).unwrap_or(line.bbox);
        }
        block.bbox = BBox::union(block.lines.iter().map(|l| l.bbox)).unwrap_or(block.bbox);
    }
}

fn flow(mut pieces: Vec<Piece>, blocks: &mut Vec<Block>) {
    let Some((gap_start, gap_end)) = find_gutter(&pieces) else {
        blocks.extend(paragraphs(rows(pieces)));
        return;
    };
    pieces.sort_by_key(|p| p.bbox.y0 + p.bbox.y1);
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for piece in pieces {
        // A ragged line end may reach into the gutter; only a piece across its middle spans.
        let middle = (gap_start + gap_end) / 2;
        if piece.bbox.x1 <= middle {
            left.push(piece);
        } else if piece.bbox.x0 >= middle {
            right.push(piece);
        } else {
            // Across the gutter: everything above it is read first, column by column.
            flow(std::mem::take(&mut left), blocks);
            flow(std::mem::take(&mut right), blocks);
            blocks.extend(paragraphs(rows(vec![piece])));
        }
    }
    flow(left, blocks);
    flow(right, blocks);
}

/// The widest vertical strip that at most a few pieces cross and that has a good share of the
/// pieces entirely on each side, as `(start, end)` in page x.
fn find_gutter(pieces: &[Piece]) -> Option<(u32, u32)> {
    let n = pieces.len();
    if n < 6 {
        return None;
    }
    let left = pieces.iter().map(|p| p.bbox.x0).min()?;
    let right = pieces.iter().map(|p| p.bbox.x1).max()?;
    let width = (right - left) as usize;
    let mut coverage = vec![0usize; width];
    for p in pieces {
        for c in &mut coverage[(p.bbox.x0 - left) as usize..(p.bbox.x1 - left) as usize] {
            *c += 1;
        }
    }
    let mut heights: Vec<u32> = pieces.iter().map(|p| p.bbox.height()).collect();
    heights.sort_unstable();
    let min_gap = (heights[n / 2] / 2).max(8) as usize;
    let allowed = (n / 10).max(2);
    let min_side = (n / 5).max(3);

    // Strips crossed by the fewest pieces win: a gutter crossed by nothing beats a wider strip
    // that clips the ragged ends of a few lines, whose pieces would then count as crossing it.
    let window = width * 15 / 100..width * 85 / 100;
    let least = coverage[window.clone()].iter().copied().min()?;
    for crossing in least..=allowed {
        let mut best: Option<(u32, u32)> = None;
        let mut x = window.start;
        while x < window.end {
            if coverage[x] > crossing {
                x += 1;
                continue;
            }
            let start = x;
            while x < window.end && coverage[x] <= crossing {
                x += 1;
            }
            let (gap_start, gap_end) = (left + start as u32, left + x as u32);
            let on_left: Vec<&Piece> = pieces.iter().filter(|p| p.bbox.x1 <= gap_start).collect();
            let on_right: Vec<&Piece> = pieces.iter().filter(|p| p.bbox.x0 >= gap_end).collect();
            let wider = best.is_none_or(|(s, e)| e - s < gap_end - gap_start);
            if x - start >= min_gap
                && wider
                && is_column(&on_left, min_side)
                && is_column(&on_right, min_side)
            {
                best = Some((gap_start, gap_end));
            }
        }
        if best.is_some() {
            return best;
        }
    }
    None
}

/// Whether pieces read as a column of text: enough of them, and most as wide as the column.
/// Table cells fail the second test (a column of numbers next to a column of names is narrow
/// against their joint extent), so tables are read row by row instead.
fn is_column(pieces: &[&Piece], min_count: usize) -> bool {
    if pieces.len() < min_count {
        return false;
    }
    let x0 = pieces.iter().map(|p| p.bbox.x0).min().unwrap_or(0);
    let x1 = pieces.iter().map(|p| p.bbox.x1).max().unwrap_or(0);
    let mut widths: Vec<u32> = pieces.iter().map(|p| p.bbox.width()).collect();
    widths.sort_unstable();
    widths[widths.len() / 2] * 2 >= x1 - x0
}

/// Joins pieces on the same row into lines, top to bottom, each read left to right.
fn rows(mut pieces: Vec<Piece>) -> Vec<Line> {
    pieces.sort_by_key(|p| p.bbox.y0 + p.bbox.y1);
    let mut rows: Vec<Vec<Piece>> = Vec::new();
    for piece in pieces {
        let joins = rows.last().is_some_and(|row| {
            let first = &row[0].bbox;
            let overlap = first
                .y1
                .min(piece.bbox.y1)
                .saturating_sub(first.y0.max(piece.bbox.y0));
            overlap * 2 >= first.height().min(piece.bbox.height())
        });
        match rows.last_mut() {
            Some(row) if joins => row.push(piece),
            _ => rows.push(vec![piece]),
        }
    }
    rows.into_iter()
        .filter_map(|mut row| {
            row.sort_by_key(|p| p.bbox.x0);
            let bbox = BBox::union(row.iter().map(|p| p.bbox))?;
            let words: Vec<Word> = row.into_iter().flat_map(|p| p.words).collect();
            if words.is_empty() {
                return None;
            }
            let confidence = words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32;
            Some(Line {
                words,
                bbox,
                confidence,
                estimated_words: false,
            })
        })
        .collect()
}

/// Splits a column's lines into blocks where the vertical gap is clearly wider than usual.
fn paragraphs(lines: Vec<Line>) -> Vec<Block> {
    let mut gaps: Vec<u32> = lines
        .windows(2)
        .map(|w| w[1].bbox.y0.saturating_sub(w[0].bbox.y1))
        .collect();
    gaps.sort_unstable();
    let usual = gaps
        .get(gaps.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0);
    let mut heights: Vec<u32> = lines.iter().map(|l| l.bbox.height()).collect();
    heights.sort_unstable();
    let height = heights.get(heights.len() / 2).copied().unwrap_or(0);
    let threshold = (usual * 2).max(usual + height / 2);

    let mut blocks: Vec<Vec<Line>> = Vec::new();
    for line in lines {
        let new_block = blocks
            .last()
            .and_then(|b| b.last())
            .is_none_or(|prev| line.bbox.y0.saturating_sub(prev.bbox.y1) > threshold);
        if new_block {
            blocks.push(vec![line]);
        } else if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    blocks
        .into_iter()
        .filter_map(|lines| {
            let bbox = BBox::union(lines.iter().map(|l| l.bbox))?;
            Some(Block { lines, bbox })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, x0: u32, y0: u32, x1: u32, y1: u32) -> Piece {
        let bbox = BBox::new(x0, y0, x1, y1);
        Piece {
            bbox,
            words: vec![Word {
                text: text.into(),
                bbox,
                confidence: 0.9,
            }],
        }
    }

    fn text(blocks: &[Block]) -> Vec<String> {
        blocks
            .iter()
            .flat_map(|b| b.lines.iter().map(|l| l.text()))
            .collect()
    }

    #[test]
    fn two_columns_are_read_one_after_the_other() {
        let mut pieces = vec![piece("Title", 300, 10, 700, 40)];
        for i in 0..6 {
            let y = 60 + i * 30;
            pieces.push(piece(&format!("L{i}"), 50, y, 470, y + 20));
            pieces.push(piece(&format!("R{i}"), 530, y, 950, y + 20));
        }
        pieces.push(piece("275", 480, 300, 520, 320));
        let got = text(&layout(pieces));
        assert_eq!(
            got,
            [
                "Title", "L0", "L1", "L2", "L3", "L4", "L5", "R0", "R1", "R2", "R3", "R4", "R5",
                "275"
            ]
        );
    }

    #[test]
    fn table_rows_are_read_row_by_row() {
        let mut pieces = vec![piece(
            "A long paragraph line that spans the page",
            50,
            10,
            950,
            30,
        )];
        for i in 0..5 {
            let y = 50 + i * 30;
            pieces.push(piece(&format!("name{i}"), 50, y, 200, y + 20));
            pieces.push(piece(&format!("{i}1"), 400, y, 480, y + 20));
            pieces.push(piece(&format!("{i}2"), 700, y, 780, y + 20));
        }
        pieces.push(piece(
            "Another long paragraph line across",
            50,
            220,
            950,
            240,
        ));
        let got = text(&layout(pieces));
        assert_eq!(got[1], "name0 01 02");
        assert_eq!(got[5], "name4 41 42");
        assert_eq!(got.len(), 7);
    }

    #[test]
    fn wide_vertical_gaps_start_new_blocks() {
        let pieces = vec![
            piece("a", 10, 10, 500, 30),
            piece("b", 10, 40, 500, 60),
            piece("c", 10, 150, 500, 170),
        ];
        let blocks = layout(pieces);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].lines.len(), 2);
    }
}
