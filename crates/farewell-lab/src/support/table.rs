//! Plain-text tables in aligned columns: the one renderer of the lab's and
//! the load generator's reports.

use std::fmt::Write as _;

/// `rows` (the header is the first) as aligned columns two spaces apart:
/// the columns listed in `left` left-aligned, the others right-aligned.
/// A row's last cell is not padded when `pad_last` is false (a free-text
/// column, such as a list of endings, takes the width it needs) or when
/// the row ends before the others (a row that says `skipped: why`); the
/// columns' widths are measured without such cells. No line ends in spaces.
///
/// ```
/// use farewell_lab::support::table;
/// let rows = vec![
///     vec!["policy".to_owned(), "conns".to_owned(), "paths".to_owned()],
///     vec!["plain".to_owned(), "5".to_owned(), "peer-closed 5".to_owned()],
///     vec!["silent".to_owned(), "skipped: needs CAP_NET_ADMIN".to_owned()],
/// ];
/// assert_eq!(
///     table::render(&rows, &[0], false),
///     "policy  conns  paths\n\
///      plain       5  peer-closed 5\n\
///      silent  skipped: needs CAP_NET_ADMIN\n"
/// );
/// ```
pub fn render(rows: &[Vec<String>], left: &[usize], pad_last: bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let unpadded =
        |row: &[String], i: usize| i + 1 == row.len() && (!pad_last || row.len() < columns);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter(|r| i < r.len() && !unpadded(r, i))
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let w = widths[i];
            if unpadded(row, i) {
                line.push_str(cell);
            } else if left.contains(&i) {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn a_padded_last_column_is_right_aligned_like_the_others() {
        let t = rows(&[&["policy", "TW"], &["plain", "600"], &["peer-first", "0"]]);
        assert_eq!(
            render(&t, &[0], true),
            "policy       TW\nplain       600\npeer-first    0\n"
        );
    }

    #[test]
    fn a_short_row_ends_with_its_own_text_and_does_not_widen_the_column() {
        let t = rows(&[
            &["policy", "conns", "rate/s"],
            &["plain", "600", "200 of 200"],
            &["silent", "skipped: needs CAP_NET_ADMIN"],
        ]);
        assert_eq!(
            render(&t, &[0], true),
            "policy  conns      rate/s\n\
             plain     600  200 of 200\n\
             silent  skipped: needs CAP_NET_ADMIN\n"
        );
    }

    #[test]
    fn nothing_to_render_is_an_empty_string() {
        assert_eq!(render(&[], &[0], false), "");
    }
}
