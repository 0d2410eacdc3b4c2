//! The local terminal: raw mode (restored on drop) and its size.

use garden_api::types::WindowSize;
use rustix::termios::{self, OptionalActions, Termios};

/// Whether stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    termios::isatty(std::io::stdin())
}

/// The terminal's size, if stdout or stdin is one.
pub fn window_size() -> Option<WindowSize> {
    let size = termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    Some(WindowSize {
        columns: u32::from(size.ws_col),
        rows: u32::from(size.ws_row),
    })
}

/// Stdin in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts the stdin terminal in raw mode.
    pub fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}
