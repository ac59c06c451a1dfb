//! The binary end to end with assert_cmd: every exit code from a real run, `list`, the four
//! output formats, colour, secrets and `--strict`.
//!
//! Each run gets a temporary HOME and working folder, no KUBECONFIG and `--no-kube`, and
//! selects its own checks with `--only cli`, so the built-in checklist does not matter.

mod support;

use assert_cmd::Command;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use support::fake_prom::fake_prometheus;
use tempfile::TempDir;

/// A sandbox for one run: HOME, working folder and a check folder.
struct Sandbox {
    home: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("checks")).unwrap();
        Sandbox { home }
    }

    fn path(&self) -> &Path {
        self.home.path()
    }

    fn checks(&self) -> PathBuf {
        self.path().join("checks")
    }

    /// Writes a check file into the check folder.
    fn check_file(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.checks().join(name), text).unwrap();
        self
    }

    /// `msa-doctor` with a clean environment, run from the sandbox.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("msa-doctor").unwrap();
        for var in [
            "KUBECONFIG",
            "NO_COLOR",
            "GRAFANA_USER",
            "GRAFANA_PASSWORD",
            "GRAFANA_TOKEN",
            "MSA_DOCTOR_GRAFANA_URL",
            "MSA_DOCTOR_PROMETHEUS_URL",
        ] {
            c.env_remove(var);
        }
        c.env("HOME", self.path()).current_dir(self.path());
        c
    }

    /// `msa-doctor check --no-kube --checks DIR --only cli --timeout 2s` plus `args`.
    fn check(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args([
            "check",
            "--no-kube",
            "--timeout",
            "2s",
            "--only",
            "cli",
            "--checks",
        ])
        .arg(self.checks())
        .args(args);
        c
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut c: Command) -> Output {
    let o = c.output().unwrap();
    let out = Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !out.stderr.contains("panicked at"),
        "a panic is a bug: {}",
        out.stderr
    );
    assert_ne!(out.code, 101, "a panic is a bug: {}", out.stderr);
    out
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", o.stdout))
}

fn check_of<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

/// A tiny HTTP server on a free loopback port: every request gets `200 UP`.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let body = r#"{"status":"UP"}"#;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn plugin(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plugins")
        .join(name)
        .display()
        .to_string()
}

fn http_check(id: &str, port: u16) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntitle = \"the test server answers\"\nkind = \"http\"\n\
         args = {{ url = \"http://127.0.0.1:{port}/actuator/health\", json_pointer = \"/status\", json_equals = \"UP\" }}\n"
    )
}

fn tcp_check(id: &str, port: u16, extra: &str) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntitle = \"something listens on {port}\"\nkind = \"tcp\"\n{extra}\n\
         args = {{ address = \"127.0.0.1:{port}\" }}\nremedy = \"start what should listen on {{address}}\"\n"
    )
}

fn exec_check(id: &str, plugin_name: &str, extra: &str) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntitle = \"the plugin {plugin_name}\"\nkind = \"exec\"\n{extra}\n\
         args = {{ command = \"{}\" }}\n",
        plugin(plugin_name)
    )
}

#[test]
fn exit_0_when_every_check_passes() {
    let port = http_server();
    let sb = Sandbox::new();
    sb.check_file("web.toml", &http_check("cli.web", port));
    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let r = json(&o);
    let c = check_of(&r, "cli.web");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["remedy"], Value::Null);
    assert_eq!(r["summary"]["fail"], 0);
    assert_eq!(r["summary"]["error"], 0);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
}

#[test]
fn exit_1_when_a_check_fails() {
    let port = closed_port();
    let sb = Sandbox::new();
    sb.check_file("port.toml", &tcp_check("cli.port", port, ""));
    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let r = json(&o);
    let c = check_of(&r, "cli.port");
    assert_eq!(c["status"], "fail");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{c}"
    );
    assert_eq!(
        c["remedy"],
        format!("start what should listen on 127.0.0.1:{port}")
    );
}

#[test]
fn exit_2_on_a_broken_check_file_naming_file_and_line() {
    let sb = Sandbox::new();
    sb.check_file(
        "broken.toml",
        "[[check]]\nid = \"cli.x\"\ntitle = \"t\"\nkind = \"no-such-kind\"\n",
    );
    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stdout.is_empty(), "stdout must stay empty: {}", o.stdout);
    let file = sb.checks().join("broken.toml");
    assert!(
        o.stderr.contains(&format!(
            "{}:4: kind: unknown kind \"no-such-kind\"",
            file.display()
        )),
        "{}",
        o.stderr
    );
    insta::assert_snapshot!(
        "broken_check_file_stderr",
        o.stderr
            .replace(&sb.checks().display().to_string(), "<checks>")
            .replace(&msa_doctor::probes::KINDS.join(", "), "<known kinds>")
    );
}

#[test]
fn exit_2_on_usage_errors() {
    let sb = Sandbox::new();
    sb.check_file("port.toml", &tcp_check("cli.port", closed_port(), ""));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--frobnicate"], "--frobnicate"),
        (vec!["--window", "5 parsecs"], "invalid duration"),
        (vec!["--wait", "0s"], "must be more than zero"),
        (vec!["--output", "yaml"], "yaml"),
        (
            vec!["--only", "no-such-check"],
            "names no check id or category",
        ),
        (vec!["--grafana-url", "not a url"], "invalid Grafana URL"),
        (vec!["--jobs", "0"], "--jobs must be at least 1"),
    ];
    for (args, says) in cases {
        let o = run(sb.check(&args));
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{args:?}: {}", o.stdout);
        assert!(o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
    let mut missing = sb.cmd();
    missing.args(["check", "--checks", "no-such-folder"]);
    let o = run(missing);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no-such-folder"), "{}", o.stderr);
}

#[test]
fn exit_2_on_an_unknown_key_in_the_config_file() {
    let sb = Sandbox::new();
    let cfg = sb.path().join("my.toml");
    std::fs::write(&cfg, "namespace = \"shop\"\nnamespaces = [\"a\"]\n").unwrap();
    let o = run(sb.check(&["--config", cfg.to_str().unwrap()]));
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stdout.is_empty());
    assert!(
        o.stderr.contains(&format!(
            "{}:2: namespaces: unknown field `namespaces`",
            cfg.display()
        )),
        "{}",
        o.stderr
    );
    // ./msa-doctor.toml is read without --config.
    std::fs::write(sb.path().join("msa-doctor.toml"), "windw = \"1h\"\n").unwrap();
    let o = run(sb.check(&[]));
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("msa-doctor.toml:1: windw"),
        "{}",
        o.stderr
    );
}

#[test]
fn exit_3_when_a_check_cannot_run() {
    let port = http_server();
    let sb = Sandbox::new();
    sb.check_file(
        "mixed.toml",
        &format!(
            "{}\n{}",
            http_check("cli.web", port),
            exec_check("cli.crash", "exit3.sh", "")
        ),
    );
    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 3, "{}\n{}", o.stdout, o.stderr);
    let r = json(&o);
    let c = check_of(&r, "cli.crash");
    assert_eq!(c["status"], "error");
    assert!(
        c["message"].as_str().unwrap().ends_with(
            "exited with code 3: kafka-consumer-groups: cannot reach the broker at kafka:9092"
        ),
        "{c}"
    );
    assert_eq!(check_of(&r, "cli.web")["status"], "pass");

    // A failure beats an error: exit 1.
    sb.check_file("port.toml", &tcp_check("cli.port", closed_port(), ""));
    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 1, "{}", o.stdout);
}

#[test]
fn strict_turns_a_warning_into_exit_1() {
    let sb = Sandbox::new();
    sb.check_file(
        "warn.toml",
        &tcp_check("cli.soft", closed_port(), "severity = \"warn\""),
    );
    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(check_of(&json(&o), "cli.soft")["status"], "warn");
    let o = run(sb.check(&["--output", "json", "--strict"]));
    assert_eq!(o.code, 1, "{}", o.stdout);
}

/// A check folder with a pass, a fail, a skip and a warning.
fn mixed(sb: &Sandbox) {
    let port = http_server();
    let closed = closed_port();
    sb.check_file(
        "mixed.toml",
        &format!(
            "{}\n{}\n{}\n{}",
            http_check("cli.web", port),
            tcp_check("cli.port", closed, ""),
            exec_check("cli.after-port", "pass.sh", "needs = [\"cli.port\"]"),
            exec_check("cli.warns", "logs-then-json.sh", "needs = [\"cli.web\"]"),
        ),
    );
}

#[test]
fn every_output_format_renders() {
    let sb = Sandbox::new();
    mixed(&sb);

    let o = run(sb.check(&["--output", "json"]));
    assert_eq!(o.code, 1);
    let r = json(&o);
    assert_eq!(r["schema"], "msa-doctor/v1");
    assert_eq!(r["tool"]["name"], "msa-doctor");
    for k in ["started_at", "duration_ms", "target", "summary"] {
        assert!(r.get(k).is_some(), "report lacks {k}");
    }
    let statuses: Vec<(&str, &str)> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["category"] == "cli")
        .map(|c| (c["id"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("cli.web", "pass"),
            ("cli.port", "fail"),
            ("cli.after-port", "skip"),
            ("cli.warns", "warn"),
        ]
    );
    assert_eq!(
        check_of(&r, "cli.after-port")["skipped_because"],
        "needs cli.port, which ended in fail"
    );

    let o = run(sb.check(&["--output", "human", "--color", "never"]));
    assert_eq!(o.code, 1);
    for id in ["cli.web", "cli.port", "cli.after-port", "cli.warns"] {
        assert!(o.stdout.contains(id), "human lacks {id}: {}", o.stdout);
    }

    let o = run(sb.check(&["--output", "junit"]));
    assert_eq!(o.code, 1);
    assert!(o.stdout.starts_with("<?xml"), "{}", o.stdout);
    assert!(o.stdout.contains("<testsuite"), "{}", o.stdout);
    assert!(o.stdout.contains("cli.port"), "{}", o.stdout);
    assert!(o.stdout.contains("<failure"), "{}", o.stdout);
    assert!(o.stdout.contains("<skipped"), "{}", o.stdout);

    let o = run(sb.check(&["--output", "markdown"]));
    assert_eq!(o.code, 1);
    assert!(o.stdout.contains("cli.port"), "{}", o.stdout);
    assert!(o.stdout.contains('|'), "a table: {}", o.stdout);
}

#[test]
fn no_ansi_codes_with_color_never_or_no_color() {
    let sb = Sandbox::new();
    mixed(&sb);
    let esc = "\x1b[";

    let o = run(sb.check(&["--color", "always"]));
    assert!(
        o.stdout.contains(esc),
        "--color always colours: {}",
        o.stdout
    );

    let o = run(sb.check(&["--color", "never"]));
    assert!(!o.stdout.contains(esc), "{}", o.stdout);
    assert!(!o.stderr.contains(esc), "{}", o.stderr);

    // NO_COLOR beats the config file's `color = "always"` (the environment beats the file)...
    std::fs::write(sb.path().join("msa-doctor.toml"), "color = \"always\"\n").unwrap();
    let mut c = sb.check(&[]);
    c.env("NO_COLOR", "1");
    let o = run(c);
    assert!(!o.stdout.contains(esc), "{}", o.stdout);
    // ...which colours without it...
    let o = run(sb.check(&[]));
    assert!(o.stdout.contains(esc), "{}", o.stdout);
    // ...and a flag beats NO_COLOR.
    let mut c = sb.check(&["--color", "always"]);
    c.env("NO_COLOR", "1");
    assert!(run(c).stdout.contains(esc));
}

#[test]
fn the_password_never_appears() {
    let secret = "s3cret-pw-9f8e7d";
    let token_secret = "glsa_tok-1a2b3c";
    let sb = Sandbox::new();
    mixed(&sb);
    sb.check_file("env.toml", &exec_check("cli.env", "env.sh", ""));
    let dead_grafana = format!("http://127.0.0.1:{}", closed_port());
    let mut runs: Vec<Command> = Vec::new();
    for format in ["human", "json", "junit", "markdown"] {
        let mut c = sb.check(&["--output", format, "--grafana-url", &dead_grafana]);
        c.env("GRAFANA_PASSWORD", secret);
        runs.push(c);
    }
    // The whole checklist, built-in checks included, against a Grafana that is not there.
    let mut c = sb.cmd();
    c.args(["check", "--no-kube", "--timeout", "2s", "--output", "json"])
        .args(["--grafana-url", &dead_grafana])
        .env("GRAFANA_PASSWORD", secret);
    runs.push(c);
    // A token, and a config error.
    let mut c = sb.check(&["--output", "json", "--grafana-url", &dead_grafana]);
    c.env("GRAFANA_TOKEN", token_secret);
    runs.push(c);
    let mut c = sb.check(&["--window", "nope"]);
    c.env("GRAFANA_PASSWORD", secret);
    runs.push(c);
    let mut c = sb.cmd();
    c.args(["list", "--output", "json"])
        .env("GRAFANA_PASSWORD", secret);
    runs.push(c);
    for c in runs {
        let o = run(c);
        for s in [secret, token_secret] {
            assert!(!o.stdout.contains(s), "stdout shows a secret: {}", o.stdout);
            assert!(!o.stderr.contains(s), "stderr shows a secret: {}", o.stderr);
        }
    }
    // And a plugin is not handed it.
    let mut c = sb.check(&["--output", "json"]);
    c.env("GRAFANA_PASSWORD", secret)
        .env("GRAFANA_TOKEN", token_secret);
    let r = json(&run(c));
    assert!(
        check_of(&r, "cli.env")["message"]
            .as_str()
            .unwrap()
            .contains("password=unset token=unset"),
        "{r}"
    );
}

#[test]
fn list_shows_every_check_with_needs_and_origin() {
    let sb = Sandbox::new();
    mixed(&sb);
    let file = sb.checks().join("mixed.toml").display().to_string();

    let mut c = sb.cmd();
    c.args(["list", "--output", "json", "--checks"])
        .arg(sb.checks());
    let o = run(c);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let r = json(&o);
    let items = r["checks"].as_array().unwrap();
    let mine: Vec<(&str, Vec<&str>, &str)> = items
        .iter()
        .filter(|c| c["category"] == "cli")
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["needs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
                    .collect(),
                c["origin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        [
            ("cli.web", vec![], file.as_str()),
            ("cli.port", vec![], file.as_str()),
            ("cli.after-port", vec!["cli.port"], file.as_str()),
            ("cli.warns", vec!["cli.web"], file.as_str()),
        ]
    );
    // Every check has the fields `list` promises; built-in ones say so.
    for c in items {
        for k in ["id", "category", "title", "needs", "origin"] {
            assert!(c.get(k).is_some(), "{c} lacks {k}");
        }
        if c["category"] != "cli" {
            assert!(c["origin"].as_str().unwrap().starts_with("built-in"), "{c}");
        }
    }

    let mut c = sb.cmd();
    c.args(["list", "--checks"]).arg(sb.checks());
    let o = run(c);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("cli.after-port "))
        .unwrap_or_else(|| panic!("no row for cli.after-port: {}", o.stdout));
    assert!(line.contains("cli.port"), "{line}");
    assert!(line.contains(&file), "{line}");
    assert!(line.contains("the plugin pass.sh"), "{line}");

    // A broken file is a usage error for `list` too.
    sb.check_file("broken.toml", "[[check]\n");
    let mut c = sb.cmd();
    c.args(["list", "--checks"]).arg(sb.checks());
    let o = run(c);
    assert_eq!(o.code, 2);
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("broken.toml:1"), "{}", o.stderr);
}

#[test]
fn no_command_means_check() {
    let sb = Sandbox::new();
    sb.check_file("port.toml", &tcp_check("cli.port", closed_port(), ""));
    let mut c = sb.cmd();
    c.args(["--no-kube", "--only", "cli", "--output", "json", "--checks"])
        .arg(sb.checks());
    let o = run(c);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(check_of(&json(&o), "cli.port")["status"], "fail");
}

#[test]
fn the_examples_folder_works() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let sb = Sandbox::new();
    let mut c = sb.cmd();
    c.args([
        "check",
        "--no-kube",
        "--only",
        "example",
        "--output",
        "json",
    ])
    .args([
        "--grafana-url",
        &format!("http://127.0.0.1:{}", closed_port()),
    ])
    .arg("--checks")
    .arg(&examples);
    let o = run(c);
    assert_eq!(
        o.code, 1,
        "the closed port fails: {}\n{}",
        o.stdout, o.stderr
    );
    let r = json(&o);
    assert_eq!(check_of(&r, "example.closed-port")["status"], "fail");
    assert_eq!(check_of(&r, "example.grafana-port")["status"], "fail");
    assert_eq!(
        check_of(&r, "example.grafana-health")["skipped_because"],
        "needs example.grafana-port, which ended in fail"
    );
    let disk = check_of(&r, "example.disk-space");
    assert!(
        disk["status"] == "pass" || disk["status"] == "warn",
        "the plugin ran: {disk}"
    );
    assert!(disk["evidence"]["free_percent"].is_number(), "{disk}");

    // As the README says to run it: from the crate's folder, with a relative path.
    let mut c = sb.cmd();
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "check",
            "--no-kube",
            "--only",
            "example",
            "--output",
            "json",
        ])
        .args([
            "--grafana-url",
            &format!("http://127.0.0.1:{}", closed_port()),
        ])
        .args(["--checks", "examples/"]);
    let o = run(c);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let r = json(&o);
    let disk = check_of(&r, "example.disk-space");
    assert!(disk["evidence"]["free_percent"].is_number(), "{disk}");

    // The example config file names the same folder, relative to itself.
    let mut c = sb.cmd();
    c.args([
        "check",
        "--no-kube",
        "--only",
        "example",
        "--output",
        "json",
        "--config",
    ])
    .arg(examples.join("msa-doctor.toml"))
    .args([
        "--grafana-url",
        &format!("http://127.0.0.1:{}", closed_port()),
    ]);
    let o = run(c);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(check_of(&json(&o), "example.closed-port")["status"], "fail");
}

/// The binary, for runs whose stdout the test chooses.
fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_msa-doctor"));
    for var in [
        "KUBECONFIG",
        "GRAFANA_PASSWORD",
        "GRAFANA_TOKEN",
        "MSA_DOCTOR_GRAFANA_URL",
        "MSA_DOCTOR_PROMETHEUS_URL",
    ] {
        c.env_remove(var);
    }
    c.stdin(std::process::Stdio::null());
    c
}

#[test]
fn a_failed_write_to_stdout_exits_non_zero() {
    let sb = Sandbox::new();
    sb.check_file("http.toml", &http_check("cli.http", http_server()));
    let mut runs: Vec<std::process::Command> = Vec::new();
    for format in ["human", "json", "junit", "markdown"] {
        let mut c = bin();
        c.args(["check", "--no-kube", "--only", "cli", "--output", format])
            .arg("--checks")
            .arg(sb.checks());
        runs.push(c);
    }
    let mut c = bin();
    c.args(["list", "--output", "json"]);
    runs.push(c);
    let mut c = bin();
    c.args(["demo", "--list-faults"]);
    runs.push(c);
    for mut c in runs {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = c.stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{c:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output"),
            "{c:?}: {stderr}"
        );
        assert!(!stderr.contains("internal error"), "{c:?}: {stderr}");
    }
}

#[test]
fn a_closed_pipe_is_quiet() {
    let prom = format!("http://127.0.0.1:{}", fake_prometheus());
    // The explanation, to a real pipe, for comparison.
    let o = bin()
        .args(["explain", "up", "--prometheus-url", &prom])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.stdout.is_empty());
    let sb = Sandbox::new();
    sb.check_file("http.toml", &http_check("cli.http", http_server()));
    let mut runs: Vec<(std::process::Command, i32)> = Vec::new();
    for format in ["human", "json"] {
        let mut c = bin();
        c.args([
            "explain",
            "up",
            "--prometheus-url",
            &prom,
            "--output",
            format,
        ]);
        runs.push((c, 0));
    }
    let mut c = bin();
    c.args(["check", "--no-kube", "--only", "cli"])
        .arg("--checks")
        .arg(sb.checks());
    runs.push((c, 0));
    for (mut c, code) in runs {
        // The reader goes away before msa-doctor writes (it answers after a network call).
        let mut child = c
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{c:?}: {stderr}");
        assert!(stderr.is_empty(), "{c:?}: {stderr}");
    }
}

#[test]
fn absurd_durations_exit_2_naming_the_flag() {
    let sb = Sandbox::new();
    sb.check_file("port.toml", &tcp_check("cli.port", closed_port(), ""));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--timeout", "500000000000y"], "--timeout"),
        (vec!["--wait", "500000000000y"], "--wait"),
        (vec!["--window", "500000000000y"], "--window"),
        (vec!["--window", "0s"], "--window"),
        (vec!["--timeout", "18446744073709551615s"], "--timeout"),
    ];
    for (args, flag) in cases {
        let o = run(sb.check(&args));
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{args:?}: {}", o.stdout);
        assert!(o.stderr.contains(flag), "{args:?}: {}", o.stderr);
        assert!(
            !o.stderr.contains("internal error"),
            "{args:?}: {}",
            o.stderr
        );
    }
    let mut c = sb.cmd();
    c.args(["explain", "up", "--lookback", "500000000000y"]);
    let o = run(c);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--lookback"), "{}", o.stderr);
}

#[test]
fn a_url_with_user_info_is_refused_without_echoing_the_password() {
    let secret = "pa55-w0rd-c4n4ry";
    let sb = Sandbox::new();
    sb.check_file("port.toml", &tcp_check("cli.port", closed_port(), ""));
    let url = format!("http://admin:{secret}@127.0.0.1:{}", closed_port());
    let mut runs: Vec<(Command, &str)> = Vec::new();
    runs.push((sb.check(&["--grafana-url", &url]), "Grafana"));
    let mut c = sb.check(&[]);
    c.env("MSA_DOCTOR_GRAFANA_URL", &url);
    runs.push((c, "Grafana"));
    runs.push((sb.check(&["--prometheus-url", &url]), "Prometheus"));
    let mut c = sb.check(&[]);
    c.env("MSA_DOCTOR_PROMETHEUS_URL", &url);
    runs.push((c, "Prometheus"));
    // A config file in its own folder (the other runs must not read it).
    let with_file = Sandbox::new();
    with_file.check_file("port.toml", &tcp_check("cli.port", closed_port(), ""));
    std::fs::write(
        with_file.path().join("msa-doctor.toml"),
        format!("grafana-url = \"{url}\"\n"),
    )
    .unwrap();
    runs.push((with_file.check(&[]), "Grafana"));
    let mut c = sb.cmd();
    c.args(["explain", "up", "--grafana-url", &url]);
    runs.push((c, "Grafana"));
    for (c, what) in runs {
        let o = run(c);
        assert_eq!(o.code, 2, "{what}: {}", o.stderr);
        assert!(!o.stderr.contains(secret), "{}", o.stderr);
        assert!(!o.stdout.contains(secret), "{}", o.stdout);
        assert!(
            o.stderr
                .contains(&format!("the {what} URL holds a user name or password")),
            "{}",
            o.stderr
        );
        if what == "Grafana" {
            assert!(
                o.stderr.contains("GRAFANA_PASSWORD")
                    && o.stderr.contains("--grafana-password-file"),
                "{}",
                o.stderr
            );
        }
    }
    // Nor does --help show it from the environment.
    for args in [vec!["--help"], vec!["check", "--help"]] {
        let mut c = sb.cmd();
        c.args(&args)
            .env("MSA_DOCTOR_GRAFANA_URL", &url)
            .env("MSA_DOCTOR_PROMETHEUS_URL", &url);
        let o = run(c);
        assert_eq!(o.code, 0);
        assert!(!o.stdout.contains(secret), "{}", o.stdout);
    }
}

/// A Grafana that answers its health check and refuses every login; counts the logins that
/// carry `password`.
fn refusing_grafana(
    password: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let logins = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = logins.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                // Headers, then the body up to Content-Length.
                loop {
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&seen).to_string();
                let (status, body) = if text.starts_with("GET /api/health") {
                    ("200 OK", r#"{"database":"ok","version":"12.3.1"}"#)
                } else if text.starts_with("POST /login") {
                    if text.contains(password) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    (
                        "401 Unauthorized",
                        r#"{"message":"Invalid username or password","messageId":"password-auth.failed","statusCode":401,"traceID":""}"#,
                    )
                } else {
                    ("404 Not Found", r#"{"message":"Not found"}"#)
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (port, logins)
}

#[test]
fn wait_never_repeats_a_refused_login() {
    use std::sync::atomic::Ordering;
    let password = "not-the-pa55word";
    let (port, logins) = refusing_grafana(password);
    let sb = Sandbox::new();
    let mut c = sb.cmd();
    c.args([
        "check",
        "--no-kube",
        "--only",
        "grafana.login",
        "--output",
        "json",
    ])
    .args(["--grafana-url", &format!("http://127.0.0.1:{port}")])
    .args(["--wait", "5s", "--timeout", "2s"])
    .env("GRAFANA_PASSWORD", password);
    let start = std::time::Instant::now();
    let o = run(c);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(
        logins.load(Ordering::SeqCst),
        1,
        "the refused password was sent again"
    );
    let r = json(&o);
    let login = check_of(&r, "grafana.login");
    assert_eq!(login["status"], "fail", "{login}");
    let message = login["message"].as_str().unwrap();
    assert!(
        message.contains("not retried under --wait")
            && message.contains("Grafana locks an account after 5 failed logins"),
        "{message}"
    );
    // Nothing else to wait for: the run does not sit out --wait.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}
