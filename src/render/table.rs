//! Left-aligned text columns two spaces apart. Piped, a table is as wide as its cells, laid
//! out by hand (a plan of 1,000 instances holds 2,000 tables: comfy-table took 60% of the
//! text view's time); on a terminal (`width`), comfy-table wraps the columns to fit it, VPs
//! and ids kept whole where they can be.

use comfy_table::{ColumnConstraint, ContentArrangement, Table, TableStyle, Width};

/// Columns `gap` apart: each column's right padding, the last one's none.
const GAP: u16 = 2;
/// Words up to this long are never broken on a terminal; longer ones (VPs) into halves.
const WORD_WHOLE_MAX: usize = 36;

pub(crate) fn table(rows: &[Vec<String>], indent: &str) -> String {
    fitted(rows, indent, None)
}

/// `table`, wrapped to `width` columns (the terminal's) when given.
pub(crate) fn fitted(rows: &[Vec<String>], indent: &str, width: Option<u16>) -> String {
    // A cell of several lines is comfy-table's to lay out.
    let multiline = || rows.iter().flatten().any(|cell| cell.contains('\n'));
    match width {
        None if !multiline() => piped(rows, indent),
        _ => comfy(rows, indent, width),
    }
}

/// Each column as wide as its widest cell (in characters) and `GAP` apart, each line's
/// trailing blanks trimmed: comfy-table's layout without a width, which a test holds it to.
fn piped(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line_max = indent.len() + widths.iter().map(|w| w * 3 + 2).sum::<usize>();
    let mut out = String::with_capacity(rows.len() * line_max);
    // A row of empty cells has no line in comfy-table's layout (no cell has a line).
    for row in rows
        .iter()
        .filter(|row| row.iter().any(|cell| !cell.is_empty()))
    {
        let start = out.len();
        out.push_str(indent);
        for (index, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if index + 1 < row.len() {
                let pad = widths[index] - cell.chars().count() + usize::from(GAP);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let trimmed = start + out[start..].trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

fn comfy(rows: &[Vec<String>], indent: &str, width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_style(TableStyle::new());
    for row in rows {
        table.add_row(row);
    }
    let columns = table.column_count();
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if index + 1 < columns { GAP } else { 0 }));
    }
    if let Some(width) = width {
        // A column is never narrower than its longest word (an HSM id, a location), or half
        // of it past 36 characters (a 64-hex VP on two lines): an id cut anywhere cannot be
        // compared; a table that cannot fit then runs past the edge instead.
        for (index, column) in table.column_iter_mut().enumerate() {
            let word = rows
                .iter()
                .filter_map(|r| r.get(index))
                .flat_map(|cell| cell.split_whitespace())
                .map(|w| w.chars().count())
                .max()
                .unwrap_or(1);
            let least = if word > WORD_WHOLE_MAX {
                word.div_ceil(2)
            } else {
                word
            };
            // The bound counts the column's padding too.
            let least = u16::try_from(least).unwrap_or(u16::MAX).saturating_add(GAP);
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(least)));
        }
        let indent_width = u16::try_from(indent.chars().count()).unwrap_or(u16::MAX);
        table
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(width.saturating_sub(indent_width).max(20));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(indent);
        out.push_str(&line);
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<String>> {
        [
            vec![" ", "step", "crypto unit", "new register", "undo"],
            vec![
                "+",
                "s1",
                "0a1b2c3d-0000-4000-8000-000000000001",
                "Empty → Full Uncommitted",
                "reversible",
            ],
            vec!["!", "s12", "(whole service instance)", "", "IRREVERSIBLE"],
            vec![">", "s3", "u3", "Full Committed c2ad0a99… → Empty", "-"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect()
    }

    /// The hand layout is comfy-table's without a width, character for character: piped
    /// output did not change when it replaced comfy-table there.
    #[test]
    fn piped_tables_are_laid_out_as_comfy_table_lays_them_out() {
        let mut ragged = rows();
        ragged[2].truncate(3);
        ragged.push(vec!["".into(), "".into(), "".into(), "".into(), "".into()]);
        for rows in [rows(), ragged] {
            for indent in ["", "    "] {
                assert_eq!(table(&rows, indent), comfy(&rows, indent, None));
            }
        }
    }

    #[test]
    fn a_terminal_table_fits_its_width() {
        let fitted = fitted(&rows(), "    ", Some(76));
        assert!(fitted.lines().all(|l| l.chars().count() <= 76), "{fitted}");
        // Words wrap; an id stays whole.
        assert!(fitted.lines().count() > rows().len(), "{fitted}");
        assert!(
            fitted.contains("0a1b2c3d-0000-4000-8000-000000000001"),
            "{fitted}"
        );
    }
}
