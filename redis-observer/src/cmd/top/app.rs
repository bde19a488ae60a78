//! The state of the view (which server, sort, window, paused) and what a key does to it. The
//! numbers come from the latest [`Snapshot`] the collector sent; nothing here does I/O.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::fetch::{By, ServerSel, Settings, Snapshot, TopItem};
use super::model::{self, CommandRow, HealthView, SortBy, Summary, Window};
use super::ui::Theme;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Keys,
    Patterns,
    BigKeys,
    Clients,
}

impl Panel {
    pub const ALL: [Panel; 4] = [Panel::Keys, Panel::Patterns, Panel::BigKeys, Panel::Clients];
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Redraw,
    /// The settings `/top` is asked with changed: tell the collector.
    Refetch,
    Quit,
}

pub struct App {
    pub theme: Theme,
    pub server: ServerSel,
    pub window: Window,
    pub by: By,
    pub sort: SortBy,
    pub paused: bool,
    /// What is on screen.
    pub shown: Option<Snapshot>,
    /// The newest snapshot while paused.
    pending: Option<Snapshot>,
    /// Paused, but the settings changed: show the next snapshot made with them.
    want_one: bool,
}

impl App {
    #[must_use]
    pub fn new(theme: Theme) -> App {
        App {
            theme,
            server: ServerSel::First,
            window: Window::Last60s,
            by: By::Calls,
            sort: SortBy::Rate,
            paused: false,
            shown: None,
            pending: None,
            want_one: false,
        }
    }

    #[must_use]
    pub fn settings(&self) -> Settings {
        Settings {
            server: self.server.clone(),
            window: self.window,
            by: self.by,
        }
    }

    /// A snapshot from the collector; true when the screen changes.
    pub fn receive(&mut self, snap: Snapshot) -> bool {
        if self.server == ServerSel::First {
            self.server = snap.settings.server.clone();
        }
        let current = snap.settings.server == self.server
            && snap.settings.window == self.window
            && snap.settings.by == self.by;
        if self.paused && !(self.want_one && current) {
            self.pending = Some(snap);
            return false;
        }
        if current {
            self.want_one = false;
        }
        self.shown = Some(snap);
        true
    }

    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Char('q' | 'Q') | KeyCode::F(10) => Action::Quit,
            KeyCode::Tab | KeyCode::Char('s') => self.cycle_server(1),
            KeyCode::BackTab | KeyCode::Char('S') => self.cycle_server(-1),
            KeyCode::Char('o' | '>') | KeyCode::F(6) => {
                self.sort = self.sort.next();
                Action::Redraw
            }
            KeyCode::Char('<') => {
                self.sort = self.sort.prev();
                Action::Redraw
            }
            KeyCode::Char('b') => self.changed(|a| a.by = a.by.next()),
            KeyCode::Char('w') => self.changed(|a| a.window = a.window.toggle()),
            KeyCode::Char('p' | ' ') => {
                self.paused = !self.paused;
                self.want_one = false;
                if !self.paused {
                    if let Some(s) = self.pending.take() {
                        self.shown = Some(s);
                    }
                }
                Action::Redraw
            }
            _ => Action::None,
        }
    }

    fn changed(&mut self, f: impl FnOnce(&mut App)) -> Action {
        f(self);
        self.want_one = self.paused;
        Action::Refetch
    }

    fn choices(&self) -> Vec<Option<String>> {
        match self.shown.as_ref().and_then(|s| s.now.as_ref()) {
            Some(now) => {
                let top = self
                    .shown
                    .as_ref()
                    .and_then(|s| s.panels.as_ref())
                    .map(|p| p.servers.as_slice())
                    .unwrap_or(&[]);
                model::server_choices(&now.scrape, top)
            }
            None => Vec::new(),
        }
    }

    fn cycle_server(&mut self, step: isize) -> Action {
        let choices = self.choices();
        if choices.len() < 2 {
            return Action::None;
        }
        let cur = self.server_option();
        let i = choices.iter().position(|c| *c == cur).unwrap_or(0);
        let n = choices.len().cast_signed();
        let next = (i.cast_signed() + step).rem_euclid(n).cast_unsigned();
        self.changed(|a| {
            a.server = match &choices[next] {
                Some(s) => ServerSel::One(s.clone()),
                None => ServerSel::All,
            }
        })
    }

    fn server_option(&self) -> Option<String> {
        self.server.as_option().map(str::to_owned)
    }

    /// `(position from 1, count)` of the server among the choices.
    #[must_use]
    pub fn server_position(&self) -> (usize, usize) {
        let c = self.choices();
        let cur = self.server_option();
        (
            c.iter().position(|x| *x == cur).map_or(0, |i| i + 1),
            c.len(),
        )
    }

    #[must_use]
    pub fn server_label(&self) -> Option<String> {
        match &self.server {
            ServerSel::First => None,
            ServerSel::One(s) => Some(s.clone()),
            ServerSel::All => Some("all servers".to_owned()),
        }
    }

    /// The command table's window as shown: `all`, `60s`, or how much of it `top` has seen.
    #[must_use]
    pub fn window_label(&self) -> String {
        match self.window {
            Window::All => "(all)".to_owned(),
            Window::Last60s => {
                let span = self
                    .shown
                    .as_ref()
                    .and_then(|s| Some(s.now.as_ref()?.at - s.base.as_ref()?.at))
                    .unwrap_or(0.0);
                if span + 0.5 >= super::fetch::WINDOW_SECS {
                    "(60s)".to_owned()
                } else {
                    format!("(last {span:.0}s)")
                }
            }
        }
    }

    #[must_use]
    pub fn summary(&self) -> Option<Summary> {
        let s = self.shown.as_ref()?;
        let server = self.server.as_option();
        Some(model::summary(
            s.now.as_ref()?.timed(),
            s.prev.as_ref().map(super::fetch::Stamped::timed),
            server,
        ))
    }

    #[must_use]
    pub fn health(&self) -> Option<HealthView> {
        let s = self.shown.as_ref()?;
        Some(model::health(
            &s.now.as_ref()?.scrape,
            s.prev.as_ref().map(|p| &*p.scrape),
        ))
    }

    #[must_use]
    pub fn command_rows(&self) -> Vec<CommandRow> {
        let Some(s) = self.shown.as_ref() else {
            return Vec::new();
        };
        let Some(now) = s.now.as_ref() else {
            return Vec::new();
        };
        let base = match self.window {
            Window::All => None,
            Window::Last60s => s.base.as_ref().map(|b| &*b.scrape),
        };
        model::command_rows(
            now.timed(),
            s.prev.as_ref().map(super::fetch::Stamped::timed),
            base,
            self.server.as_option(),
            self.sort,
        )
    }

    pub fn panel_items(&self, p: Panel) -> Result<&[TopItem], &str> {
        let Some(s) = self.shown.as_ref() else {
            return Ok(&[]);
        };
        if let Some(e) = &s.top_error {
            return Err(e);
        }
        let Some(panels) = &s.panels else {
            return Ok(&[]);
        };
        Ok(match p {
            Panel::Keys => &panels.keys,
            Panel::Patterns => &panels.patterns,
            Panel::BigKeys => &panels.bigkeys,
            Panel::Clients => &panels.clients,
        })
    }

    #[must_use]
    pub fn metrics_error(&self) -> Option<&str> {
        self.shown.as_ref()?.metrics_error.as_deref()
    }

    /// A fetch error to show in place of the keys line.
    #[must_use]
    pub fn error_line(&self) -> Option<&str> {
        let s = self.shown.as_ref()?;
        s.metrics_error.as_deref().or(s.top_error.as_deref())
    }
}
