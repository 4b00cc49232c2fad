//! The console's state and what each key does. Keys become [`Request`]s for
//! the worker; nothing here touches the terminal or the supervisor.

use std::collections::VecDeque;

use hermes_core::ProfileName;
use hermes_model::logs::Chunk;
use hermes_model::{Action, Gateway, Snapshot};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Lines of log kept for the detail pane.
pub const LOG_LINES: usize = 200;

/// What the user asked the worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Refresh,
    Act(ProfileName, Action),
    Create(ProfileName),
    Delete(ProfileName),
    /// Start or stop every gateway.
    All(Action),
}

impl Request {
    /// What the audit log names an action by, and its target.
    pub fn audited(&self) -> Option<(&'static str, &str)> {
        match self {
            Request::Refresh => None,
            Request::Act(p, verb) => Some((verb.as_str(), p.as_str())),
            Request::Create(p) => Some(("create", p.as_str())),
            Request::Delete(p) => Some(("delete", p.as_str())),
            Request::All(verb) => Some((verb.as_str(), hermes_model::audit::ALL)),
        }
    }
}

/// What a key led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Continue,
    Quit,
    Send(Request),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// The help screen: every key.
    Help,
    /// Typing the filter (kept in [`App::filter`] as it is typed).
    Filter,
    /// Waiting for `y` to delete this profile.
    ConfirmDelete(ProfileName),
    /// Waiting for `y` to stop every gateway.
    ConfirmStopAll,
    /// Typing a new profile's name.
    NewProfile {
        input: String,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// The order of the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// The model's order.
    #[default]
    Model,
    Profile,
    State,
    Restarts,
    Uptime,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Model => Sort::Profile,
            Sort::Profile => Sort::State,
            Sort::State => Sort::Restarts,
            Sort::Restarts => Sort::Uptime,
            Sort::Uptime => Sort::Model,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sort::Model => "default",
            Sort::Profile => "profile",
            Sort::State => "state",
            Sort::Restarts => "restarts",
            Sort::Uptime => "uptime",
        }
    }
}

/// Every key, for the help screen; the footer shows the first ones.
pub const KEYS: &[(&str, &str)] = &[
    ("?", "help: this list"),
    ("s", "start the selected gateway"),
    ("t", "stop the selected gateway"),
    ("r", "restart the selected gateway"),
    ("S", "start every gateway"),
    ("T", "stop every gateway (asks first)"),
    (
        "/",
        "filter by name or state (Enter keeps it, Esc clears it)",
    ),
    ("o", "sort: default, profile, state, restarts, uptime"),
    ("n", "new profile"),
    ("d", "delete the selected profile (asks first)"),
    ("f F5", "refresh now"),
    ("↑↓ j k", "select a gateway"),
    ("g G Home End", "first / last gateway"),
    ("PgUp PgDn", "scroll the log back / forward"),
    ("z", "log full screen on / off"),
    ("w", "wrap long log lines on / off"),
    (
        "Esc",
        "close a dialog, the help or the filter (never quits)",
    ),
    ("q Ctrl-C", "quit"),
];

/// Log lines a PgUp/PgDn moves.
pub const LOG_PAGE: usize = 10;

#[derive(Debug, Default)]
struct LogView {
    profile: Option<ProfileName>,
    cursor: Option<String>,
    lines: VecDeque<String>,
}

#[derive(Debug)]
pub struct App {
    pub snapshot: Option<Snapshot>,
    pub selected: usize,
    pub mode: Mode,
    pub message: Option<Message>,
    /// What the worker is doing for us right now.
    pub busy: Option<String>,
    /// Draw in colour (off when `NO_COLOR` says so).
    pub colour: bool,
    /// Rows whose name or state contains this are shown.
    pub filter: String,
    pub sort: Sort,
    /// Display lines the log is scrolled back from its end.
    pub log_scroll: usize,
    pub log_full: bool,
    pub log_wrap: bool,
    log: LogView,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    pub fn new() -> App {
        App {
            snapshot: None,
            selected: 0,
            mode: Mode::Normal,
            message: None,
            busy: None,
            colour: true,
            filter: String::new(),
            sort: Sort::Model,
            log_scroll: 0,
            log_full: false,
            log_wrap: true,
            log: LogView::default(),
        }
    }

    pub fn gateways(&self) -> &[Gateway] {
        self.snapshot.as_ref().map_or(&[], |s| &s.gateways)
    }

    /// The rows shown: the filter applied, in the chosen order.
    pub fn visible(&self) -> Vec<&Gateway> {
        let f = self.filter.to_lowercase();
        let mut rows: Vec<&Gateway> = self
            .gateways()
            .iter()
            .filter(|g| {
                f.is_empty()
                    || g.profile.as_str().contains(&f)
                    || g.label.as_str().replace('_', " ").contains(&f)
            })
            .collect();
        // Stable: ties keep the model's order.
        match self.sort {
            Sort::Model => {}
            Sort::Profile => rows.sort_by(|a, b| a.profile.as_str().cmp(b.profile.as_str())),
            Sort::State => rows.sort_by_key(|g| g.label.as_str()),
            Sort::Restarts => rows.sort_by_key(|g| std::cmp::Reverse(g.restarts)),
            Sort::Uptime => rows.sort_by_key(|g| std::cmp::Reverse(g.uptime_secs)),
        }
        rows
    }

    pub fn selected_gateway(&self) -> Option<&Gateway> {
        self.visible().get(self.selected).copied()
    }

    /// Keep `profile` selected when the rows change, if it is still shown.
    fn reselect(&mut self, keep: Option<ProfileName>) {
        let rows = self.visible();
        let found = keep.and_then(|p| rows.iter().position(|g| g.profile == p));
        let count = rows.len();
        if let Some(i) = found {
            self.selected = i;
        }
        self.selected = self.selected.min(count.saturating_sub(1));
    }

    pub fn on_snapshot(&mut self, snap: Snapshot) {
        // Keep the same profile selected when rows come and go.
        let keep = self.selected_gateway().map(|g| g.profile.clone());
        self.snapshot = Some(snap);
        self.reselect(keep);
    }

    pub fn on_done(&mut self, result: Result<String, String>) {
        self.busy = None;
        self.message = Some(match result {
            Ok(text) => Message { text, error: false },
            Err(text) => Message { text, error: true },
        });
    }

    /// The selected gateway's profile, and where its log was last read
    /// (`None`: read the tail).
    pub fn log_request(&self) -> Option<(ProfileName, Option<String>)> {
        let profile = self.selected_gateway()?.profile.clone();
        let cursor = if self.log.profile.as_ref() == Some(&profile) {
            self.log.cursor.clone()
        } else {
            None
        };
        Some((profile, cursor))
    }

    pub fn on_log(&mut self, profile: &ProfileName, chunk: Chunk) {
        if self.log.profile.as_ref() != Some(profile) || chunk.reset {
            self.log = LogView {
                profile: Some(profile.clone()),
                ..LogView::default()
            };
        }
        self.log.lines.extend(chunk.lines);
        while self.log.lines.len() > LOG_LINES {
            self.log.lines.pop_front();
        }
        if !chunk.cursor.is_empty() {
            self.log.cursor = Some(chunk.cursor);
        }
        if self.log.profile.as_ref() != Some(profile) {
            self.log_scroll = 0;
        }
    }

    pub fn log_lines(&self) -> impl Iterator<Item = &String> {
        self.log.lines.iter()
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Step {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Step::Quit;
        }
        match self.mode.clone() {
            Mode::Normal => self.normal_key(key.code),
            Mode::Help => {
                // Any key closes the help; only q and Ctrl-C quit.
                self.mode = Mode::Normal;
                Step::Continue
            }
            Mode::Filter => {
                self.filter_key(key.code);
                Step::Continue
            }
            Mode::ConfirmDelete(profile) => {
                self.mode = Mode::Normal;
                if key.code == KeyCode::Char('y') {
                    self.busy = Some(format!("deleting {profile}"));
                    Step::Send(Request::Delete(profile))
                } else {
                    self.message = Some(Message {
                        text: format!("kept profile {profile}"),
                        error: false,
                    });
                    Step::Continue
                }
            }
            Mode::ConfirmStopAll => {
                self.mode = Mode::Normal;
                if key.code == KeyCode::Char('y') {
                    self.all(Action::Stop)
                } else {
                    self.message = Some(Message {
                        text: "stopped nothing".to_string(),
                        error: false,
                    });
                    Step::Continue
                }
            }
            Mode::NewProfile { input, .. } => self.new_profile_key(key.code, input),
        }
    }

    fn normal_key(&mut self, code: KeyCode) -> Step {
        let count = self.visible().len();
        match code {
            KeyCode::Char('q') => return Step::Quit,
            // Esc never quits: it clears a filter left on, or does nothing.
            KeyCode::Esc => self.set_filter(String::new()),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('o') => {
                let keep = self.selected_gateway().map(|g| g.profile.clone());
                self.sort = self.sort.next();
                self.reselect(keep);
                self.message = Some(Message {
                    text: format!("sorted by {}", self.sort.name()),
                    error: false,
                });
            }
            KeyCode::Down | KeyCode::Char('j') if count > 0 => {
                self.selected = (self.selected + 1).min(count - 1)
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = count.saturating_sub(1),
            KeyCode::PageUp => self.log_scroll += LOG_PAGE,
            KeyCode::PageDown => self.log_scroll = self.log_scroll.saturating_sub(LOG_PAGE),
            KeyCode::Char('z') => self.log_full = !self.log_full,
            KeyCode::Char('w') => self.log_wrap = !self.log_wrap,
            KeyCode::Char('f') | KeyCode::F(5) => return Step::Send(Request::Refresh),
            KeyCode::Char('n') => {
                self.mode = Mode::NewProfile {
                    input: String::new(),
                    error: None,
                }
            }
            KeyCode::Char('S') => return self.all(Action::Start),
            KeyCode::Char('T') if self.busy.is_some() => {
                self.message = Some(Message {
                    text: "wait for the current action to finish".to_string(),
                    error: true,
                })
            }
            KeyCode::Char('T') => self.mode = Mode::ConfirmStopAll,
            KeyCode::Char(c @ ('s' | 't' | 'r' | 'd')) => return self.on_selected(c),
            _ => {}
        }
        Step::Continue
    }

    fn filter_key(&mut self, code: KeyCode) {
        let mut filter = self.filter.clone();
        match code {
            KeyCode::Esc => {
                filter.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                filter.pop();
            }
            KeyCode::Char(c) if filter.chars().count() < 64 && !c.is_control() => filter.push(c),
            _ => {}
        }
        self.set_filter(filter);
    }

    fn set_filter(&mut self, filter: String) {
        let keep = self.selected_gateway().map(|g| g.profile.clone());
        self.filter = filter;
        self.reselect(keep);
    }

    /// Start or stop every gateway in one batched call.
    fn all(&mut self, verb: Action) -> Step {
        if self.busy.is_some() {
            self.message = Some(Message {
                text: "wait for the current action to finish".to_string(),
                error: true,
            });
            return Step::Continue;
        }
        self.busy = Some(format!("{} every gateway", verb.as_str()));
        Step::Send(Request::All(verb))
    }

    fn on_selected(&mut self, key: char) -> Step {
        let Some(g) = self.selected_gateway() else {
            return Step::Continue;
        };
        let profile = g.profile.clone();
        let refusal = match key {
            'd' if profile.is_default() => {
                Some("the default profile cannot be deleted".to_string())
            }
            _ if !g.profile_exists => {
                Some(format!("{profile} has a slot but no profile directory"))
            }
            _ if self.busy.is_some() => Some("wait for the current action to finish".to_string()),
            _ => None,
        };
        if let Some(text) = refusal {
            self.message = Some(Message { text, error: true });
            return Step::Continue;
        }
        let verb = match key {
            's' => Action::Start,
            't' => Action::Stop,
            'r' => Action::Restart,
            _ => {
                self.mode = Mode::ConfirmDelete(profile);
                return Step::Continue;
            }
        };
        self.busy = Some(format!("{} {profile}", verb.as_str()));
        Step::Send(Request::Act(profile, verb))
    }

    fn new_profile_key(&mut self, code: KeyCode, mut input: String) -> Step {
        match code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                return Step::Continue;
            }
            KeyCode::Enter => {
                return match ProfileName::parse(&input) {
                    Ok(name) => {
                        self.mode = Mode::Normal;
                        self.busy = Some(format!("creating {name}"));
                        Step::Send(Request::Create(name))
                    }
                    Err(e) => {
                        self.mode = Mode::NewProfile {
                            input,
                            error: Some(e.to_string()),
                        };
                        Step::Continue
                    }
                };
            }
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Char(c) if input.chars().count() < 64 && !c.is_control() => input.push(c),
            _ => {}
        }
        self.mode = Mode::NewProfile { input, error: None };
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_model::fake::{FakeEnv, Slot};
    use hermes_model::Snapshot;
    use ratatui::crossterm::event::KeyEvent;
    use std::time::Duration;

    fn key(c: char) -> KeyEvent {
        KeyEvent::from(KeyCode::Char(c))
    }

    fn app_with(names: &[&str]) -> App {
        let env = FakeEnv::new();
        for n in names {
            env.add_profile(n);
            env.set_slot(n, Slot::up(1));
        }
        let mut app = App::new();
        app.on_snapshot(Snapshot::collect_with(&env, Duration::from_millis(20)));
        app
    }

    fn name(s: &str) -> ProfileName {
        ProfileName::parse(s).unwrap()
    }

    #[test]
    fn keys_act_on_the_selected_gateway() {
        let mut app = app_with(&["alpha", "beta"]);
        assert_eq!(app.selected_gateway().unwrap().profile.as_str(), "default");
        app.on_key(KeyEvent::from(KeyCode::Down));
        assert_eq!(
            app.on_key(key('t')),
            Step::Send(Request::Act(name("alpha"), Action::Stop))
        );
        // One action at a time.
        assert_eq!(app.on_key(key('s')), Step::Continue);
        assert!(app.message.as_ref().unwrap().error);
        app.on_done(Ok("gateway 'alpha' is down".into()));
        assert_eq!(
            app.on_key(key('r')),
            Step::Send(Request::Act(name("alpha"), Action::Restart))
        );
        app.on_done(Ok("ok".into()));
        app.on_key(key('j'));
        app.on_key(key('j'));
        assert_eq!(
            app.on_key(key('s')),
            Step::Send(Request::Act(name("beta"), Action::Start))
        );
        assert_eq!(app.on_key(key('f')), Step::Send(Request::Refresh));
        assert_eq!(app.on_key(key('q')), Step::Quit);
    }

    fn shown(app: &App) -> Vec<&str> {
        app.visible().iter().map(|g| g.profile.as_str()).collect()
    }

    #[test]
    fn esc_closes_help_and_filter_and_never_quits() {
        let mut app = app_with(&["alpha", "beta", "gamma"]);
        let esc = KeyEvent::from(KeyCode::Esc);
        assert_eq!(app.on_key(esc), Step::Continue);
        app.on_key(key('?'));
        assert_eq!(app.mode, Mode::Help);
        assert_eq!(app.on_key(esc), Step::Continue);
        assert_eq!(app.mode, Mode::Normal);
        app.on_key(key('/'));
        for c in "ta".chars() {
            app.on_key(key(c));
        }
        assert_eq!(shown(&app), ["beta"]);
        app.on_key(KeyEvent::from(KeyCode::Enter));
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(shown(&app), ["beta"], "Enter keeps the filter");
        // Keys act on the rows shown.
        app.on_key(key('j'));
        assert_eq!(
            app.on_key(key('t')),
            Step::Send(Request::Act(name("beta"), Action::Stop))
        );
        assert_eq!(app.on_key(esc), Step::Continue);
        assert_eq!(shown(&app).len(), 4, "Esc clears the filter");
        assert_eq!(app.selected_gateway().unwrap().profile.as_str(), "beta");
        app.on_key(key('d'));
        assert_eq!(app.on_key(esc), Step::Continue);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn filter_by_state_and_sort() {
        let env = FakeEnv::new();
        for n in ["b", "a", "c"] {
            env.add_profile(n);
            env.set_slot(n, Slot::up(1));
        }
        env.set_slot("c", Slot::down(hermes_core::service::Want::Down));
        let mut app = App::new();
        app.on_snapshot(Snapshot::collect_with(&env, Duration::from_millis(20)));
        app.on_key(key('/'));
        for c in "stopped".chars() {
            app.on_key(key(c));
        }
        assert_eq!(shown(&app), ["c"]);
        app.on_key(KeyEvent::from(KeyCode::Esc));
        app.on_key(key('o'));
        assert_eq!(app.sort, Sort::Profile);
        assert_eq!(shown(&app), ["a", "b", "c", "default"]);
        app.on_key(key('o'));
        assert_eq!(app.sort, Sort::State);
        // By label: no_slot, stopped, then the running ones.
        assert_eq!(shown(&app)[..2], ["default", "c"]);
    }

    #[test]
    fn log_keys_scroll_toggle_and_all() {
        let mut app = app_with(&["alpha"]);
        app.on_key(KeyEvent::from(KeyCode::PageUp));
        app.on_key(KeyEvent::from(KeyCode::PageUp));
        assert_eq!(app.log_scroll, 2 * LOG_PAGE);
        app.on_key(KeyEvent::from(KeyCode::PageDown));
        assert_eq!(app.log_scroll, LOG_PAGE);
        app.on_key(key('z'));
        app.on_key(key('w'));
        assert!(app.log_full && !app.log_wrap);
        assert_eq!(
            app.on_key(key('S')),
            Step::Send(Request::All(Action::Start))
        );
        app.on_done(Ok("started".into()));
        assert_eq!(app.on_key(key('T')), Step::Continue);
        assert_eq!(app.mode, Mode::ConfirmStopAll);
        assert_eq!(app.on_key(key('y')), Step::Send(Request::All(Action::Stop)));
    }

    #[test]
    fn delete_needs_y_and_never_the_default() {
        let mut app = app_with(&["alpha"]);
        assert_eq!(app.on_key(key('d')), Step::Continue);
        assert_eq!(app.mode, Mode::Normal, "default must not be deletable");
        app.on_key(key('j'));
        app.on_key(key('d'));
        assert_eq!(app.mode, Mode::ConfirmDelete(name("alpha")));
        assert_eq!(app.on_key(key('n')), Step::Continue);
        assert_eq!(app.mode, Mode::Normal);
        app.on_key(key('d'));
        assert_eq!(
            app.on_key(key('y')),
            Step::Send(Request::Delete(name("alpha")))
        );
    }

    #[test]
    fn new_profile_validates_the_name() {
        let mut app = app_with(&[]);
        app.on_key(key('n'));
        for c in "a/b".chars() {
            app.on_key(key(c));
        }
        assert_eq!(app.on_key(KeyEvent::from(KeyCode::Enter)), Step::Continue);
        assert!(matches!(&app.mode, Mode::NewProfile { error: Some(_), .. }));
        for _ in 0..3 {
            app.on_key(KeyEvent::from(KeyCode::Backspace));
        }
        for c in "Coder".chars() {
            app.on_key(key(c));
        }
        assert_eq!(
            app.on_key(KeyEvent::from(KeyCode::Enter)),
            Step::Send(Request::Create(name("coder")))
        );
        app.on_key(key('n'));
        app.on_key(KeyEvent::from(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn selection_follows_the_profile_across_refreshes() {
        let env = FakeEnv::new();
        env.add_profile("b");
        let mut app = App::new();
        app.on_snapshot(Snapshot::collect_with(&env, Duration::from_millis(20)));
        app.on_key(key('j'));
        env.add_profile("a");
        app.on_snapshot(Snapshot::collect_with(&env, Duration::from_millis(20)));
        assert_eq!(app.selected_gateway().unwrap().profile.as_str(), "b");
    }
}
