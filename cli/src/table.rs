//! A plain-text table with aligned columns.

use std::fmt;

use crate::term::printable;

/// The most characters a cell shows; the rest is cut, with the full length noted.
pub(crate) const MAX_CELL: usize = 1000;

/// Rows of cells, printed with columns padded to their widest cell.
#[derive(Debug)]
pub(crate) struct Table<const N: usize> {
    header: [String; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    pub(crate) fn new(header: [&str; N]) -> Self {
        Self {
            header: header.map(str::to_owned),
            rows: Vec::new(),
        }
    }

    /// Adds a row; each cell is made [`printable`] on one line, and cut to
    /// [`MAX_CELL`] characters.
    pub(crate) fn row(&mut self, cells: [String; N]) {
        self.rows
            .push(cells.map(|cell| cut(printable(&cell, false))));
    }
}

/// `cell` cut to [`MAX_CELL`] characters, saying how long it was.
fn cut(cell: String) -> String {
    let length = cell.chars().count();
    if length <= MAX_CELL {
        return cell;
    }
    let kept: String = cell.chars().take(MAX_CELL).collect();
    format!("{kept}… ({length} characters)")
}

impl<const N: usize> fmt::Display for Table<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths = [0; N];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                line.push_str(cell);
                if i + 1 < N {
                    // Padded by hand: a formatting width is limited to u16::MAX.
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_cell_is_cut_and_padding_needs_no_format_width() {
        let mut table = Table::new(["a", "b"]);
        table.row(["x".repeat(70_000), "y".into()]);
        table.row(["short".into(), "z".into()]);
        let shown = table.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert!(
            lines[1].ends_with("… (70000 characters)  y"),
            "{}",
            &lines[1][990..]
        );
        let column = |line: &str, c: char| line.chars().position(|x| x == c);
        assert_eq!(column(lines[2], 'z'), column(lines[1], 'y'));
    }
}
