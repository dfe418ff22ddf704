//! The CLI client: `status`, `get`, `reload`, `watch` over the control
//! socket. (Implemented by the control-socket work.)

use std::path::PathBuf;

/// Options shared by every client subcommand.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Explicit socket path; `None` resolves as SPEC §4 says for clients.
    pub socket: Option<PathBuf>,
}

/// `hotconf status [--json]`. Returns the exit code.
pub fn status(opts: &ClientOptions, json: bool) -> i32 {
    let _ = (opts, json);
    eprintln!("hotconf status: not implemented yet");
    1
}

/// `hotconf get NAME[/pointer]`. Returns the exit code.
pub fn get(opts: &ClientOptions, what: &str) -> i32 {
    let _ = (opts, what);
    eprintln!("hotconf get: not implemented yet");
    1
}

/// `hotconf reload`. Returns the exit code.
pub fn reload(opts: &ClientOptions) -> i32 {
    let _ = opts;
    eprintln!("hotconf reload: not implemented yet");
    1
}

/// `hotconf watch [NAME]`. Returns the exit code.
pub fn watch(opts: &ClientOptions, name: Option<&str>) -> i32 {
    let _ = (opts, name);
    eprintln!("hotconf watch: not implemented yet");
    1
}
