//! Flag parsing for the `hotconf` binary. Only parses and dispatches: every
//! subcommand's work lives in library modules that are tested without a
//! terminal. Every `run` flag also reads `HOTCONF_<FLAG>`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::client::{self, ClientOptions};
use crate::control::paths::{self, Role};
use crate::daemon::{self, LogFormat, Settings};
use crate::observe::logging;
use crate::pipeline::{self, Limits};

/// hotconf — hot-reloadable configuration daemon.
#[derive(Debug, Parser)]
#[command(name = "hotconf", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd style).
    Run(RunArgs),
    /// Validate documents without a daemon (like `nginx -t`).
    Check(CheckArgs),
    /// Show the running daemon's status; exit 1 unless every document is ok.
    Status {
        /// Output format: `json` prints the raw API answer (the same
        /// `--format json` as `check` and `plan`).
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
        /// The same as `--format json` (kept for existing scripts).
        #[arg(long, hide = true)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a served document, or part of it, as JSON.
    Get {
        /// `NAME` or `NAME/json/pointer`.
        what: String,
        /// Print a string value bare, without quotes (numbers and booleans
        /// as they are, tables and arrays as compact JSON), for scripts.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask the daemon for an explicit reload and wait for its result.
    Reload {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the last reloads, newest first, like `git log --stat`.
    History {
        /// How many reloads.
        #[arg(short = 'n', long = "max-count", default_value_t = 10)]
        n: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what an explicit reload would change, judged by the running
    /// daemon without applying anything; exit 1 unless every document would
    /// be ok. Without a daemon, runs `check` (no diff is possible then).
    Plan(PlanArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of hotconf and its subcommands.
    Man,
    /// Print one JSON line per new generation until interrupted.
    Watch {
        /// Only generations that change this document.
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Where the documents and schemas are (shared by `run` and `check`).
#[derive(Debug, Args)]
pub struct DirArgs {
    /// Directory of NAME.toml documents.
    #[arg(long, env = "HOTCONF_CONFIG_DIR", default_value = "./configs")]
    pub config_dir: PathBuf,
    /// Directory of NAME.schema.json schemas.
    #[arg(long, env = "HOTCONF_SCHEMA_DIR", default_value = "./schemas")]
    pub schema_dir: PathBuf,
    /// Larger files are rejected without being read (e.g. 4MiB, 512KiB, 1000).
    #[arg(long, env = "HOTCONF_MAX_FILE_SIZE", default_value = "4MiB", value_parser = parse_size)]
    pub max_file_size: u64,
}

/// Flags of `hotconf run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dirs: DirArgs,
    /// Control socket path.
    #[arg(long, env = "HOTCONF_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Quiet time after a bare modification before it is read.
    #[arg(long, env = "HOTCONF_DEBOUNCE", default_value = "100ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Period of the checksum poll; 0 disables it.
    #[arg(long, env = "HOTCONF_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// One rejected document rejects the whole reload.
    #[arg(long, env = "HOTCONF_ALL_OR_NOTHING", value_parser = BoolishValueParser::new())]
    pub all_or_nothing: bool,
    /// Do not watch the directories: changes are then found only by the
    /// poll, SIGHUP and the API (filesystems without inotify, such as NFS;
    /// deploys that reload explicitly).
    #[arg(long, env = "HOTCONF_NO_WATCH", value_parser = BoolishValueParser::new())]
    pub no_watch: bool,
    /// Mode of the control socket, octal.
    #[arg(long, env = "HOTCONF_SOCKET_MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Group owning the control socket (name or gid).
    #[arg(long, env = "HOTCONF_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// Also serve /metrics and the /-/healthy, /-/ready probes over TCP at
    /// ADDR:PORT (`:9464` is every interface, `localhost:9464` resolves).
    #[arg(long, env = "HOTCONF_METRICS_LISTEN", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "HOTCONF_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// Log level (off, error, warn, info, debug, trace) or tracing filter
    /// directives (info,hotconf=debug).
    #[arg(long, env = "HOTCONF_LOG_LEVEL", default_value = "info", value_parser = logging::parse_log_filter)]
    pub log_level: String,
    /// Persist the last good snapshot here.
    #[arg(long, env = "HOTCONF_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Concurrent connections on the control socket (and, separately, on
    /// --metrics-listen); more are closed at once. An eighth is kept for
    /// root and the daemon's user. Lowered to fit the open-file limit.
    #[arg(
        long,
        env = "HOTCONF_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    /// Let the daemon be core-dumped and ptrace-attached by its own uid
    /// (by default it marks itself non-dumpable: a dump would hold every
    /// secret it serves).
    #[arg(long, env = "HOTCONF_ALLOW_CORE_DUMPS", value_parser = BoolishValueParser::new())]
    pub allow_core_dumps: bool,
    /// Serve documents that are symlinks to files owned by a uid other than
    /// root and the daemon's (refused unless this is given; README
    /// "Security" says why).
    #[arg(long, env = "HOTCONF_ALLOW_FOREIGN_SYMLINKS", value_parser = BoolishValueParser::new())]
    pub allow_foreign_symlinks: bool,
    /// Outputs file: files rendered from the documents, checked, then
    /// applied (see README "Feeding programs that read files").
    #[arg(long, env = "HOTCONF_OUTPUTS")]
    pub outputs: Option<PathBuf>,
    /// How many reloads the daemon remembers for `hotconf history` (0:
    /// none).
    #[arg(long, env = "HOTCONF_HISTORY", default_value_t = crate::history::DEFAULT_CAPACITY)]
    pub history: usize,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
    /// `<N>`-prefixed lines for the journal, without timestamps (the
    /// default under systemd, when stderr is the journal).
    Journald,
}

/// `--format` values of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// The table.
    Text,
    /// The raw `/v1/status` answer.
    Json,
}

/// `--format` values of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Compiler-style lines.
    Text,
    /// A JSON array of problems on stdout.
    Json,
    /// `FILE:LINE:COL: error: CODE …` lines, as gcc prints them (VS Code's
    /// `$gcc` problem matcher, Emacs' compilation mode).
    Gcc,
}

/// Flags of `hotconf check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dirs: DirArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Print nothing on success (and no summary line on failure).
    #[arg(long, short)]
    pub quiet: bool,
    /// Ask the running daemon instead: the same as `hotconf plan` (what
    /// would change, judged with the daemon's schemas and rules).
    #[arg(long)]
    pub against_daemon: bool,
    /// The daemon's socket, for `--against-daemon`.
    #[arg(long, env = "HOTCONF_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Only these files (default: every document of the config directory).
    pub files: Vec<PathBuf>,
    /// Also dry-run this outputs file: render every output from the
    /// documents, write each candidate beside its destination and run its
    /// check, replacing and applying nothing.
    #[arg(long, env = "HOTCONF_OUTPUTS")]
    pub outputs: Option<PathBuf>,
}

/// Flags of `hotconf plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where `check` looks when no daemon answers (the daemon uses its own).
    #[command(flatten)]
    pub dirs: DirArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Candidate files NAME.toml (default: the daemon's config directory as
    /// it is on disk).
    pub files: Vec<PathBuf>,
}

/// Flags shared by client subcommands.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Control socket path.
    #[arg(long, env = "HOTCONF_SOCKET")]
    pub socket: Option<PathBuf>,
}

impl ClientArgs {
    fn options(&self) -> ClientOptions {
        ClientOptions {
            socket: self.socket.clone(),
        }
    }
}

impl RunArgs {
    /// The daemon settings these flags describe.
    pub fn settings(&self) -> Settings {
        Settings {
            config_dir: self.dirs.config_dir.clone(),
            schema_dir: self.dirs.schema_dir.clone(),
            socket: self.socket.clone(),
            debounce: self.debounce,
            max_file_size: self.dirs.max_file_size,
            poll_interval: self.poll_interval,
            all_or_nothing: self.all_or_nothing,
            watch: !self.no_watch,
            socket_mode: self.socket_mode,
            socket_group: self.socket_group.clone(),
            metrics_listen: self.metrics_listen,
            log_format: match self.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
                LogFormatArg::Journald => LogFormat::Journald,
            },
            log_level: self.log_level.clone(),
            state_dir: self.state_dir.clone(),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            allow_core_dumps: self.allow_core_dumps,
            allow_foreign_symlinks: self.allow_foreign_symlinks,
            outputs: self.outputs.clone(),
            history: self.history,
        }
    }
}

/// Parses a duration with units (`100ms`, `30s`, `1m`); a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (use units: 100ms, 30s, 1m)"))
}

/// Parses a TCP listen address: `ADDR:PORT`, `[V6]:PORT`, `:PORT` (every
/// interface, as Prometheus's own `--web.listen-address` means it) or
/// `HOST:PORT` (resolved once, at startup; the first address is used).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Some(port) = t.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port is not a number"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    t.to_socket_addrs()
        .map_err(|e| format!("{s:?}: {e} (use ADDR:PORT, :PORT or HOST:PORT)"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Parses an octal file mode (`0660` or `660`), at most `0777`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if mode > 0o777 {
        return Err(format!("{s:?} is larger than 0777"));
    }
    Ok(mode)
}

/// Parses a byte size: a number with an optional unit (`B`, `KiB`, `MiB`,
/// `GiB`, or `K`, `M`, `G` meaning the same binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB, GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The command line parser, with the socket's real default (resolved from
/// this environment, SPEC §4) in every `--socket` help text.
pub fn command() -> clap::Command {
    let daemon = paths::resolve_socket(None, Role::Daemon).path;
    let client = paths::resolve_socket(None, Role::Client).path;
    let help = |path: &std::path::Path, order: &str| {
        format!(
            "Control socket path [default: {}; in order: {order}]",
            path.display()
        )
    };
    let daemon_help = help(
        &daemon,
        "$RUNTIME_DIRECTORY/hotconf.sock, $XDG_RUNTIME_DIR/hotconf.sock, /tmp/hotconf-$UID/hotconf.sock",
    );
    let client_help = help(
        &client,
        "$RUNTIME_DIRECTORY/hotconf.sock, /run/hotconf/hotconf.sock if it exists, \
         $XDG_RUNTIME_DIR/hotconf.sock, /tmp/hotconf-$UID/hotconf.sock",
    );
    let mut cmd = Cli::command();
    for name in ["status", "get", "reload", "watch"] {
        let h = client_help.clone();
        cmd = cmd.mut_subcommand(name, |c| c.mut_arg("socket", |a| a.help(h)));
    }
    cmd.mut_subcommand("run", |c| c.mut_arg("socket", |a| a.help(daemon_help)))
}

/// `hotconf help [COMMAND] --help` means what `hotconf help [COMMAND]`
/// does (clap's `help` subcommand takes no flags of its own).
fn normalize_help(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_some_and(|a| a == "help") {
        let (head, tail) = args.split_at(2.min(args.len()));
        let mut kept: Vec<std::ffi::OsString> = head.to_vec();
        kept.extend(
            tail.iter()
                .filter(|a| *a != "--help" && *a != "-h")
                .cloned(),
        );
        args = kept;
    }
    args
}

/// Parses the process arguments and runs the subcommand.
pub fn main() -> ExitCode {
    let args = normalize_help(std::env::args_os().collect());
    let parsed = command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 0 for --help/--version, 2 for usage errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match cli.command {
        Command::Run(args) => daemon::run(args.settings()),
        Command::Check(args) => check(&args),
        Command::Status {
            format,
            json,
            client,
        } => client::status(&client.options(), json || format == StatusFormat::Json),
        Command::Get { what, raw, client } => client::get_value(&client.options(), &what, raw),
        Command::Completions { shell } => {
            let mut cmd = command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "hotconf", &mut out);
            print_bytes(&out)
        }
        Command::Man => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(command()).render(&mut out) {
                Ok(()) => print_bytes(&out),
                Err(e) => {
                    eprintln!("hotconf man: {e}");
                    1
                }
            }
        }
        Command::Reload { client } => client::reload(&client.options()),
        Command::History { n, format, client } => {
            client::history::history(&client.options(), n, format == OutputFormat::Json)
        }
        Command::Plan(args) => client::history::plan(
            &args.client.options(),
            &args.dirs.config_dir,
            &args.dirs.schema_dir,
            Limits {
                max_file_size: args.dirs.max_file_size,
                ..Limits::default()
            },
            &args.files,
            args.format == OutputFormat::Json,
        ),
        Command::Watch { name, client } => client::watch(&client.options(), name.as_deref()),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Writes generated output to stdout; exit 1 if it cannot be written.
fn print_bytes(bytes: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    i32::from(out.write_all(bytes).and_then(|()| out.flush()).is_err())
}

/// "1 document", "2 documents".
fn documents(n: usize) -> String {
    if n == 1 {
        "1 document".to_string()
    } else {
        format!("{n} documents")
    }
}

fn check(args: &CheckArgs) -> i32 {
    let limits = Limits {
        max_file_size: args.dirs.max_file_size,
        ..Limits::default()
    };
    if args.against_daemon {
        let opts = ClientOptions {
            socket: args.socket.clone(),
        };
        return client::history::plan(
            &opts,
            &args.dirs.config_dir,
            &args.dirs.schema_dir,
            limits,
            &args.files,
            args.format == OutputFormat::Json,
        );
    }
    let rejections = pipeline::check(
        &args.dirs.config_dir,
        &args.dirs.schema_dir,
        &args.files,
        limits,
    );
    // How many were checked; an unreadable directory is already a rejection.
    let checked = if args.files.is_empty() {
        pipeline::list_documents(&args.dirs.config_dir)
            .map(|d| d.len())
            .unwrap_or(0)
    } else {
        args.files.len()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match args.format {
        OutputFormat::Json => {
            let flat: Vec<_> = rejections.iter().flat_map(|r| r.flat()).collect();
            serde_json::to_writer_pretty(&mut out, &flat)
                .map_err(std::io::Error::from)
                .and_then(|_| writeln!(out))
        }
        OutputFormat::Text => rejections
            .iter()
            .flat_map(|r| r.lines())
            .try_for_each(|line| writeln!(out, "{line}")),
        OutputFormat::Gcc => rejections
            .iter()
            .flat_map(|r| r.gcc_lines())
            .try_for_each(|line| writeln!(out, "{line}")),
    };
    if written.is_err() {
        return 1;
    }
    if !rejections.is_empty() {
        if !args.quiet {
            let problems: usize = rejections.iter().map(|r| r.problems.len().max(1)).sum();
            eprintln!(
                "hotconf check: {problems} problem(s); {} checked",
                documents(checked)
            );
        }
        return 1;
    }
    if checked == 0 {
        // An empty directory is almost always a wrong --config-dir.
        eprintln!(
            "hotconf check: no documents found in {} (expected NAME.toml files)",
            pipeline::display_path(&args.dirs.config_dir)
        );
        return 1;
    }
    if !args.quiet {
        eprintln!("{} ok", documents(checked));
    }
    match &args.outputs {
        Some(file) => check_outputs(file, args, limits),
        None => 0,
    }
}

/// `check --outputs FILE`: the outputs file, then every output rendered
/// and checked as a candidate beside its destination (nothing replaced,
/// nothing applied). One line per output; exit 1 if any failed.
fn check_outputs(file: &std::path::Path, args: &CheckArgs, limits: Limits) -> i32 {
    use crate::output;
    let snapshot =
        match output::snapshot_from_dirs(&args.dirs.config_dir, &args.dirs.schema_dir, limits) {
            Ok(s) => s,
            Err(rejections) => {
                rejections
                    .iter()
                    .flat_map(|r| r.lines())
                    .for_each(|l| say(&l));
                return 1;
            }
        };
    let results = match output::dry_run(file, &snapshot) {
        Ok(results) => results,
        Err(rejections) => {
            rejections
                .iter()
                .flat_map(|r| r.lines())
                .for_each(|l| say(&l));
            return 1;
        }
    };
    let mut failed = false;
    for (name, result) in results {
        match result {
            Ok(()) => say(&format!(
                "output {name}: ok (rendered and checked; nothing replaced)"
            )),
            Err(reason) => {
                failed = true;
                say(&format!("output {name}: {reason}"));
            }
        }
    }
    i32::from(failed)
}

/// One line on stdout; a closed stdout is not worth a panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_modes() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("100").is_err());
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("7777").is_err());
        assert_eq!(
            parse_listen(":9464"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 9464)))
        );
        assert_eq!(
            parse_listen("127.0.0.1:1"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        );
        assert!(parse_listen("localhost:9464").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen(":http").is_err());
    }
}
