//! Outputs (`--outputs`): files rendered from validated documents, checked
//! as a candidate, then applied — with a real nginx (Debian package
//! `nginx`) started by the test on a loopback port, and with plain
//! commands for the failure cases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http, wait_until, Daemon, Env, DEADLINE};
use serde_json::{json, Value};

/// The schema of the `web` document: a greeting any string may be (a `;`
/// included, which nginx will not take unquoted) and a secret token.
fn web_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "greeting": {"type": "string", "minLength": 1},
            "token": {"type": "string", "writeOnly": true},
            "note": {"type": "string"}
        },
        "required": ["greeting", "token"],
        "additionalProperties": false
    })
}

fn web_doc(greeting: &str, note: &str) -> String {
    format!("greeting = {greeting:?}\ntoken = \"s3cr3t-tok3n-value\"\nnote = {note:?}\n")
}

const SECRET: &str = "s3cr3t-tok3n-value";

/// What the nginx include renders to for `greeting`.
fn include_for(greeting: &str) -> String {
    format!("map $host $greeting {{\n    default {greeting};\n}}\n")
}

const TEMPLATE: &str = "map $host $greeting {\n    default {{ web.greeting }};\n}\n";

/// An env with the `web` document and its schema, and `out/` for
/// destinations.
fn env_with_web(greeting: &str) -> (Env, PathBuf) {
    let env = Env::new();
    env.write_schema("web", &web_schema());
    env.write_doc("web", &web_doc(greeting, "first"));
    let out = env.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(env.path().join("web.conf.j2"), TEMPLATE).unwrap();
    (env, out)
}

fn write_outputs(env: &Env, text: &str) -> PathBuf {
    let path = env.path().join("outputs.toml");
    let tmp = env.path().join(".outputs.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn toml_argv(argv: &[&str]) -> String {
    serde_json::to_string(argv).unwrap()
}

fn start(env: &Env, outputs: &Path) -> Daemon {
    let mut args = env.run_args();
    args.extend([
        "--no-watch".to_string(),
        "--outputs".to_string(),
        outputs.display().to_string(),
    ]);
    let d = Daemon::spawn(&args, &[]);
    assert!(d.wait_ready(&env.socket()), "{:?}", d.stderr_lines());
    d
}

fn status(env: &Env) -> Value {
    http(&env.socket(), "GET", "/v1/status", None)
        .unwrap()
        .json()
}

fn output(env: &Env, name: &str) -> Value {
    status(env)["outputs"][name].clone()
}

/// Waits until output `name` satisfies `cond`; returns it.
fn wait_output(d: &Daemon, env: &Env, name: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(DEADLINE, || {
        last = output(env, name);
        cond(&last)
    });
    assert!(
        ok,
        "output {name} never got there: {last}\nlogs: {:?}",
        d.stderr_lines()
    );
    last
}

fn reload(env: &Env) {
    let r = http(&env.socket(), "POST", "/v1/reload", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

fn renders(d: &Daemon, env: &Env, name: &str) -> u64 {
    let _ = d;
    let text = http(&env.socket(), "GET", "/metrics", None).unwrap().body;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    common::sample(&scrape, "hotconf_output_renders_total", &[("output", name)])
        .or_else(|| common::sample(&scrape, "hotconf_output_renders", &[("output", name)]))
        .unwrap_or(-1.0) as u64
}

fn no_secret_anywhere(d: &Daemon, env: &Env) {
    let logs = d.stderr_lines().join("\n");
    assert!(!logs.contains(SECRET), "a secret in the logs: {logs}");
    let st = http(&env.socket(), "GET", "/v1/status", None).unwrap().body;
    assert!(!st.contains(SECRET), "a secret in the status: {st}");
}

// ---------------------------------------------------------------------------
// A real nginx

/// An nginx master of its own (own prefix, pid file, error log, a free
/// loopback port, `daemon off`), stopped in `Drop`.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    port: u16,
}

fn nginx_bin() -> &'static str {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("nginx is not installed: apt-get install nginx (Debian package `nginx`)");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An nginx main configuration that includes `include`.
fn nginx_conf(prefix: &Path, port: u16, include: &Path) -> String {
    let p = prefix.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {p}/nginx.pid;\n\
         error_log {p}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n\
         fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n\
         include {};\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{ return 200 \"$greeting\\n\"; }}\n  }}\n}}\n",
        include.display()
    )
}

impl Nginx {
    /// Writes `nginx.conf` (including `live`) and `check.conf` (the same,
    /// including `candidate`) under `prefix`, and starts nginx.
    fn start(prefix: &Path, live: &Path, candidate: &Path) -> Nginx {
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        let port = free_port();
        std::fs::write(prefix.join("nginx.conf"), nginx_conf(prefix, port, live)).unwrap();
        std::fs::write(
            prefix.join("check.conf"),
            nginx_conf(prefix, port, candidate),
        )
        .unwrap();
        let child = Command::new(nginx_bin())
            .args(["-p", &prefix.display().to_string(), "-e"])
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let n = Nginx {
            child,
            prefix: prefix.to_path_buf(),
            port,
        };
        assert!(
            wait_until(DEADLINE, || n.get().is_some()),
            "nginx did not answer; error log: {}",
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
        n
    }

    /// `curl` the greeting.
    fn get(&self) -> Option<String> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/", self.port))
            .output()
            .expect("curl (Debian package `curl`)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until every answer is `value`: after a reload, the old
    /// worker finishes gracefully and may answer a request or two first.
    fn settles_on(&self, value: &str) -> bool {
        wait_until(DEADLINE, || {
            (0..5).all(|_| self.get().as_deref() == Some(value))
        })
    }

    fn args(&self, conf: &str) -> Vec<String> {
        vec![
            nginx_bin().to_string(),
            "-p".into(),
            self.prefix.display().to_string(),
            "-e".into(),
            self.prefix.join("cmd-error.log").display().to_string(),
            "-c".into(),
            self.prefix.join(conf).display().to_string(),
        ]
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits.
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let stopped = wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn nginx_gets_only_checked_configuration_and_reloads_on_change() {
    let (env, out) = env_with_web("hello");
    let live = out.join("web.conf");
    let candidate = out.join(".web.conf.hotconf-candidate");
    // What hotconf will render, already in place: the restart case.
    std::fs::write(&live, include_for("hello")).unwrap();
    let nginx = Nginx::start(&env.path().join("nginx"), &live, &candidate);
    assert_eq!(nginx.get().as_deref(), Some("hello"));

    let mut check = nginx.args("check.conf");
    check.insert(1, "-t".into());
    let mut apply = nginx.args("nginx.conf");
    apply.extend(["-s".into(), "reload".into()]);
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    let apply: Vec<&str> = apply.iter().map(String::as_str).collect();
    let outputs = write_outputs(
        &env,
        &format!(
            "[output.web]\ntemplate = \"web.conf.j2\"\ndestination = {:?}\nmode = \"0644\"\ncheck = {}\napply = {}\ntimeout = \"20s\"\n",
            live.display().to_string(),
            toml_argv(&check),
            toml_argv(&apply)
        ),
    );
    let d = start(&env, &outputs);

    // Startup: rendered, found identical, nothing applied.
    let o = wait_output(&d, &env, "web", |o| o["state"] == "ok");
    assert_eq!(o["applied_at"], Value::Null, "{o}");
    assert_eq!(o["generation"], 1);

    // A valid edit: checked, replaced, nginx reloaded, new value served.
    env.write_doc("web", &web_doc("world", "first"));
    reload(&env);
    assert!(
        nginx.settles_on("world"),
        "nginx never served the new value: {:?}\n{}",
        nginx.get(),
        output(&env, "web")
    );
    let o = wait_output(&d, &env, "web", |o| {
        o["state"] == "ok" && o["generation"] == 2
    });
    assert!(o["applied_at"].is_string(), "{o}");
    assert_eq!(
        std::fs::read_to_string(&live).unwrap(),
        include_for("world")
    );

    // Valid for the schema, not for nginx: the old file stays byte for
    // byte, nginx keeps serving the old value, the output says why.
    let before = std::fs::read(&live).unwrap();
    env.write_doc("web", &web_doc("bad; value", "first"));
    reload(&env);
    let o = wait_output(&d, &env, "web", |o| o["state"] == "error");
    let reason = o["last_error"]["message"].as_str().unwrap();
    assert!(reason.contains("check failed"), "{reason}");
    assert!(reason.contains("exited with status 1"), "{reason}");
    assert!(
        reason.contains("map parameters"),
        "nginx's own words: {reason}"
    );
    assert_eq!(std::fs::read(&live).unwrap(), before);
    assert!(!candidate.exists(), "the candidate is removed");
    let answers: Vec<Option<String>> = (0..5).map(|_| nginx.get()).collect();
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("world")),
        "{answers:?}\n{}",
        std::fs::read_to_string(nginx.prefix.join("error.log")).unwrap_or_default()
    );
    let warned = d.events("output_failed");
    assert!(!warned.is_empty(), "a WARN output_failed");
    let metrics = http(&env.socket(), "GET", "/metrics", None).unwrap().body;
    assert!(
        metrics.contains("hotconf_output_checks_failed_total{output=\"web\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hotconf_output_ok{output=\"web\"} 0"),
        "{metrics}"
    );

    // Fixed again: ok.
    env.write_doc("web", &web_doc("again", "first"));
    reload(&env);
    assert!(nginx.settles_on("again"));
    wait_output(&d, &env, "web", |o| {
        o["state"] == "ok" && o["last_error"].is_null()
    });
    no_secret_anywhere(&d, &env);
}

// ---------------------------------------------------------------------------
// The rest, with plain commands

/// An outputs file with one `web` output (template) to `out/web.conf` and
/// `extra` lines.
fn web_output(env: &Env, out: &Path, extra: &str) -> PathBuf {
    write_outputs(
        env,
        &format!(
            "[output.web]\ntemplate = \"web.conf.j2\"\ndestination = {:?}\n{extra}",
            out.join("web.conf").display().to_string()
        ),
    )
}

#[test]
fn destination_mode_is_0600_by_default() {
    let (env, out) = env_with_web("hello");
    let outputs = web_output(&env, &out, "");
    let d = start(&env, &outputs);
    wait_output(&d, &env, "web", |o| o["state"] == "ok");
    let meta = std::fs::metadata(out.join("web.conf")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        include_for("hello")
    );
}

#[test]
fn mode_owner_and_group_are_set_on_the_destination() {
    use std::os::unix::fs::MetadataExt;
    let (env, out) = env_with_web("hello");
    // Changing the owner needs root (or CAP_CHOWN), as hotconf's docs say.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let extra = if root {
        "mode = \"0640\"\nowner = \"65534\"\ngroup = \"65534\"\n"
    } else {
        "mode = \"0640\"\n"
    };
    let outputs = web_output(&env, &out, extra);
    let d = start(&env, &outputs);
    wait_output(&d, &env, "web", |o| o["state"] == "ok");
    let meta = std::fs::metadata(out.join("web.conf")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
}

#[test]
fn identical_render_applies_nothing() {
    let (env, out) = env_with_web("hello");
    let applied = env.path().join("applied");
    std::fs::write(out.join("web.conf"), include_for("hello")).unwrap();
    let apply = toml_argv(&["sh", "-c", &format!("echo x >> {}", applied.display())]);
    let outputs = web_output(&env, &out, &format!("apply = {apply}\n"));
    let d = start(&env, &outputs);
    wait_output(&d, &env, "web", |o| o["state"] == "ok");
    assert_eq!(renders(&d, &env, "web"), 1);
    // `note` is read by nobody's template, but it is in `web`: a render,
    // byte-identical, so no apply.
    env.write_doc("web", &web_doc("hello", "second"));
    reload(&env);
    assert!(wait_until(DEADLINE, || renders(&d, &env, "web") == 2));
    let o = wait_output(&d, &env, "web", |o| o["generation"] == 2);
    assert_eq!(o["state"], "ok");
    assert!(!applied.exists(), "apply ran for an identical render");
    // A real change applies once.
    env.write_doc("web", &web_doc("changed", "second"));
    reload(&env);
    assert!(wait_until(DEADLINE, || applied.exists()));
    wait_output(&d, &env, "web", |o| {
        o["generation"] == 3 && o["state"] == "ok"
    });
    assert_eq!(std::fs::read_to_string(&applied).unwrap(), "x\n");
}

#[test]
fn undefined_variable_is_an_error_and_keeps_the_old_file() {
    let (env, out) = env_with_web("hello");
    let outputs = web_output(&env, &out, "");
    let d = start(&env, &outputs);
    wait_output(&d, &env, "web", |o| o["state"] == "ok");
    let before = std::fs::read(out.join("web.conf")).unwrap();
    // The template now names a value the document does not have.
    std::fs::write(
        env.path().join("web.conf.j2"),
        "{{ web.greeting }} {{ web.missing }}\n",
    )
    .unwrap();
    reload(&env); // re-reads the outputs file and its template
    let o = wait_output(&d, &env, "web", |o| o["state"] == "error");
    let reason = o["last_error"]["message"].as_str().unwrap();
    assert!(reason.contains("undefined"), "{reason}");
    assert_eq!(std::fs::read(out.join("web.conf")).unwrap(), before);
}

#[test]
fn hanging_check_is_killed_at_the_timeout() {
    let (env, out) = env_with_web("hello");
    std::fs::write(out.join("web.conf"), "old\n").unwrap();
    let outputs = web_output(
        &env,
        &out,
        "check = [\"sleep\", \"600\"]\ntimeout = \"300ms\"\n",
    );
    let d = start(&env, &outputs);
    let o = wait_output(&d, &env, "web", |o| o["state"] == "error");
    let reason = o["last_error"]["message"].as_str().unwrap();
    assert!(reason.contains("timed out after 300ms"), "{reason}");
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        "old\n"
    );
    assert!(!out.join(".web.conf.hotconf-candidate").exists());
}

#[test]
fn failing_apply_is_reported_and_the_file_is_replaced() {
    let (env, out) = env_with_web("hello");
    std::fs::write(out.join("web.conf"), "old\n").unwrap();
    let outputs = web_output(
        &env,
        &out,
        "apply = [\"sh\", \"-c\", \"echo no such service >&2; exit 4\"]\n",
    );
    let d = start(&env, &outputs);
    let o = wait_output(&d, &env, "web", |o| o["state"] == "error");
    let reason = o["last_error"]["message"].as_str().unwrap();
    assert!(reason.contains("apply failed"), "{reason}");
    assert!(
        reason.contains("exited with status 4: no such service"),
        "{reason}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        include_for("hello")
    );
    let metrics = http(&env.socket(), "GET", "/metrics", None).unwrap().body;
    assert!(
        metrics.contains("hotconf_output_applies_failed_total{output=\"web\"} 1"),
        "{metrics}"
    );
}

#[test]
fn outputs_file_type_error_exits_1_with_line_and_column() {
    let (env, out) = env_with_web("hello");
    let outputs = web_output(&env, &out, "timeout = 10\n");
    let mut args = env.run_args();
    args.extend(["--outputs".to_string(), outputs.display().to_string()]);
    let mut d = Daemon::spawn(&args, &[]);
    let code = d.wait_exit(DEADLINE).expect("exits");
    assert_eq!(code.code(), Some(1));
    let stderr = d.stderr_lines().join("\n");
    let label = outputs.display().to_string();
    assert!(
        stderr.contains(&format!("{label}:4:11: E_SCHEMA /output/web/timeout")),
        "{stderr}"
    );
}

#[test]
fn explicit_reload_with_a_broken_outputs_file_keeps_the_previous_definition() {
    let (env, out) = env_with_web("hello");
    let outputs = web_output(&env, &out, "");
    let d = start(&env, &outputs);
    wait_output(&d, &env, "web", |o| o["state"] == "ok");
    // Broken: a second destination for the same output name is not the
    // point; a type error is.
    write_outputs(
        &env,
        &format!(
            "[output.web]\ntemplate = \"web.conf.j2\"\ndestination = {:?}\nmode = 644\n",
            out.join("elsewhere.conf").display().to_string()
        ),
    );
    env.write_doc("web", &web_doc("changed", "first"));
    reload(&env);
    let s = {
        let mut s = Value::Null;
        assert!(wait_until(DEADLINE, || {
            s = status(&env);
            s["outputs_file"]["ok"] == false
        }));
        s
    };
    let problem = &s["outputs_file"]["last_error"]["problems"][0];
    assert_eq!(problem["line"], 4, "{s}");
    assert_eq!(problem["pointer"], "/output/web/mode", "{s}");
    // The previous definition still renders, to the previous destination.
    wait_output(&d, &env, "web", |o| {
        o["generation"] == 2 && o["state"] == "ok"
    });
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        include_for("changed")
    );
    assert!(!out.join("elsewhere.conf").exists());
    assert_eq!(d.events("outputs_rejected").len(), 1);
    // `hotconf status` shows it and exits 1.
    let st = Command::new(common::bin())
        .args(["status", "--socket"])
        .arg(env.socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert_eq!(st.status.code(), Some(1), "{text}");
    assert!(text.contains("OUTPUT"), "{text}");
    assert!(text.contains(":4:8: E_SCHEMA /output/web/mode"), "{text}");
}

#[test]
fn a_rendered_secret_never_reaches_logs_or_status() {
    let (env, out) = env_with_web("hello");
    std::fs::write(env.path().join("web.conf.j2"), "token {{ web.token }};\n").unwrap();
    // A check that prints the whole candidate — the secret — to stderr.
    let outputs = web_output(
        &env,
        &out,
        "check = [\"sh\", \"-c\", \"cat {candidate} >&2; exit 1\"]\n",
    );
    let d = start(&env, &outputs);
    let o = wait_output(&d, &env, "web", |o| o["state"] == "error");
    let reason = o["last_error"]["message"].as_str().unwrap();
    assert!(reason.contains("token <redacted>;"), "{reason}");
    no_secret_anywhere(&d, &env);
    assert!(!out.join("web.conf").exists());
}

#[test]
fn check_outputs_runs_the_whole_chain_dry() {
    let (env, out) = env_with_web("hello");
    let seen = env.path().join("seen");
    let check = toml_argv(&["cp", "{candidate}", &seen.display().to_string()]);
    let outputs = web_output(
        &env,
        &out,
        &format!("check = {check}\napply = [\"false\"]\n"),
    );
    let run = |outputs: &Path| {
        Command::new(common::bin())
            .arg("check")
            .arg("--config-dir")
            .arg(&env.configs)
            .arg("--schema-dir")
            .arg(&env.schemas)
            .arg("--outputs")
            .arg(outputs)
            .output()
            .unwrap()
    };
    let r = run(&outputs);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("output web: ok"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        include_for("hello")
    );
    assert!(!out.join("web.conf").exists(), "nothing replaced");
    assert!(!out.join(".web.conf.hotconf-candidate").exists());

    let failing = web_output(&env, &out, "check = [\"false\"]\n");
    let r = run(&failing);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("output web: check failed"), "{stdout}");
}

/// The README's nginx example (`examples/nginx/`): its outputs file is
/// valid, and its document, schema and template render something a real
/// `nginx -t` accepts inside `http {}` beside a site that proxies to it.
#[test]
fn the_shipped_nginx_example_renders_what_nginx_accepts() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nginx");
    let defs = hotconf::output::definition::load(&example.join("outputs.toml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let def = &defs.outputs["nginx-upstreams"];
    assert_eq!(
        def.candidate(),
        Path::new("/etc/nginx/hotconf/.upstreams.conf.hotconf-candidate")
    );
    let check_conf = std::fs::read_to_string(example.join("nginx-check.conf")).unwrap();
    assert!(check_conf.contains(&def.candidate().display().to_string()));

    let env = Env::new();
    let prefix = env.path().join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).unwrap();
    let out = env.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let candidate = out.join(".upstreams.conf.hotconf-candidate");
    let p = prefix.display();
    std::fs::write(
        prefix.join("check.conf"),
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  include {};\n  \
             server {{ listen 127.0.0.1:{}; location / {{ proxy_pass http://app; }} }}\n}}\n",
            candidate.display(),
            free_port()
        ),
    )
    .unwrap();
    let check = [
        nginx_bin(),
        "-t",
        "-q",
        "-p",
        &p.to_string(),
        "-e",
        &format!("{p}/error.log"),
        "-c",
        &format!("{p}/check.conf"),
    ];
    let outputs = write_outputs(
        &env,
        &format!(
            "[output.up]\ntemplate = {:?}\ndestination = {:?}\ncheck = {}\n",
            example.join("upstreams.conf.j2").display().to_string(),
            out.join("upstreams.conf").display().to_string(),
            toml_argv(&check)
        ),
    );
    let r = Command::new(common::bin())
        .arg("check")
        .arg("--config-dir")
        .arg(example.join("configs"))
        .arg("--schema-dir")
        .arg(example.join("schemas"))
        .arg("--outputs")
        .arg(&outputs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("output up: ok"), "{stdout}");
}

/// Publishes that come while a run is in its `check` coalesce into one
/// more run, from the snapshot current when it starts.
#[test]
fn publishes_during_a_run_coalesce_into_one_more_run() {
    let (env, out) = env_with_web("v1");
    let go = env.path().join("go");
    let gate = format!("while [ ! -e {} ]; do sleep 0.02; done", go.display());
    let check = toml_argv(&["sh", "-c", &gate]);
    let outputs = web_output(&env, &out, &format!("check = {check}\ntimeout = \"60s\"\n"));
    let d = start(&env, &outputs);
    // The startup run is held in its check.
    assert!(wait_until(DEADLINE, || out
        .join(".web.conf.hotconf-candidate")
        .exists()));
    for v in ["v2", "v3", "v4"] {
        env.write_doc("web", &web_doc(v, "first"));
        reload(&env); // returns once published; the output is still held
    }
    assert_eq!(status(&env)["generation"], 4);
    std::fs::write(&go, "").unwrap();
    let o = wait_output(&d, &env, "web", |o| {
        o["generation"] == 4 && o["state"] == "ok"
    });
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        include_for("v4")
    );
    assert_eq!(renders(&d, &env, "web"), 2, "{o}");
}

/// With `--all-or-nothing`, a reload with any rejection publishes nothing,
/// so an output never sees half of it.
#[test]
fn with_all_or_nothing_an_output_sees_only_whole_reloads() {
    let (env, out) = env_with_web("v1");
    env.write_schema(
        "other",
        &json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    );
    env.write_doc("other", "n = 1\n");
    std::fs::write(
        env.path().join("web.conf.j2"),
        "{{ web.greeting }} {{ other.n }}\n",
    )
    .unwrap();
    let outputs = web_output(&env, &out, "");
    let mut args = env.run_args();
    args.extend([
        "--no-watch".to_string(),
        "--all-or-nothing".to_string(),
        "--outputs".to_string(),
        outputs.display().to_string(),
    ]);
    let d = Daemon::spawn(&args, &[]);
    assert!(d.wait_ready(&env.socket()), "{:?}", d.stderr_lines());
    wait_output(&d, &env, "web", |o| o["state"] == "ok");
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        "v1 1\n"
    );
    // A good edit of `web` beside a bad one of `other`: nothing published.
    env.write_doc("web", &web_doc("v2", "first"));
    env.write_doc("other", "n = \"x\"\n");
    reload(&env);
    assert_eq!(status(&env)["generation"], 1);
    // Then both good: one whole reload, one render of both.
    env.write_doc("other", "n = 2\n");
    reload(&env);
    wait_output(&d, &env, "web", |o| o["generation"] == 2);
    assert_eq!(
        std::fs::read_to_string(out.join("web.conf")).unwrap(),
        "v2 2\n"
    );
    assert_eq!(renders(&d, &env, "web"), 2);
}
