//! Integration tests: the real `hermes` binary against a real `s6-svscan`.

mod util;

// Profile files, names and aliases.
mod profiles;
// Gateway slots under a real supervisor: start, stop, crash, policy, delete.
mod supervision;
