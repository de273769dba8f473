//! Progress bars on stderr.
//!
//! indicatif's stderr target draws nothing when stderr is not a terminal,
//! so a bar never ends up in a log file or a test's captured output; the
//! commands print a one-line summary instead where it matters.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `length` steps on stderr, or a hidden one when `visible` is false.
pub fn bar(length: u64, visible: bool, template: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}
