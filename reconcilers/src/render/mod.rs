//! Proxy configuration files, rendered from a cluster's routes and its extension's `Config`.
//! Text in, text out: the same inputs always give the same bytes, so a content hash names them.

pub mod haproxy;
pub mod nginx;

/// Appends `text` as one line indented by `indent` levels of four spaces (an empty `text` is an
/// empty line).
fn line(out: &mut String, indent: usize, text: &str) {
    if !text.is_empty() {
        for _ in 0..indent {
            out.push_str("    ");
        }
        out.push_str(text);
    }
    out.push('\n');
}
