//! Where users run it (issue 13), through the binary: kubectl's habits (`-n`, `-o`, `-q`, `-v`,
//! `kubectl msa-doctor` through a link), completions that bash accepts, the man page,
//! `version`, `docs ID`, help that shows defaults, the user's config file and
//! `config show`, which never shows a secret.

use assert_cmd::Command;
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use tempfile::TempDir;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `msa-doctor` with a clean environment, HOME and working folder in `home`.
fn cmd(home: &Path) -> Command {
    let mut c = Command::cargo_bin("msa-doctor").unwrap();
    for var in [
        "KUBECONFIG",
        "NO_COLOR",
        "GRAFANA_USER",
        "GRAFANA_PASSWORD",
        "GRAFANA_TOKEN",
        "MSA_DOCTOR_GRAFANA_URL",
        "MSA_DOCTOR_PROMETHEUS_URL",
        "XDG_CONFIG_HOME",
        "COLUMNS",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", home).current_dir(home);
    c
}

fn run(mut c: Command) -> Output {
    let o = c.output().unwrap();
    let out = Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(!out.stderr.contains("panicked at"), "{}", out.stderr);
    out
}

fn tcp_check(id: &str, port: u16) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntitle = \"something listens on {port}\"\nkind = \"tcp\"\n\
         args = {{ address = \"127.0.0.1:{port}\" }}\nremedy = \"start it\"\n"
    )
}

/// A folder with a passing (`cli.open`) and a failing (`cli.closed`) check; the listener
/// must live as long as the runs.
fn two_checks() -> (TempDir, TcpListener) {
    let home = tempfile::tempdir().unwrap();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = home.path().join("checks");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "{}\n{}",
            tcp_check("cli.open", open.local_addr().unwrap().port()),
            tcp_check("cli.closed", closed)
        ),
    )
    .unwrap();
    (home, open)
}

fn check_run(home: &Path, extra: &[&str]) -> Output {
    let mut c = cmd(home);
    c.args([
        "check",
        "--no-kube",
        "--only",
        "cli",
        "--checks",
        "checks",
        "--color",
        "never",
    ])
    .args(extra);
    run(c)
}

#[test]
fn quiet_shows_problems_and_the_summary_verbose_shows_passing_details() {
    let (home, _open) = two_checks();
    let normal = check_run(home.path(), &[]);
    assert_eq!(normal.code, 1, "{}{}", normal.stdout, normal.stderr);
    assert!(normal.stdout.contains("(cli.open)"));
    assert!(normal.stdout.contains("(cli.closed)"));

    let quiet = check_run(home.path(), &["-q"]);
    assert_eq!(quiet.code, 1);
    assert!(!quiet.stdout.contains("(cli.open)"), "{}", quiet.stdout);
    assert!(quiet.stdout.contains("(cli.closed)"), "{}", quiet.stdout);
    assert!(quiet.stdout.contains("fix: start it"));
    let last = quiet.stdout.lines().last().unwrap();
    assert!(
        last.starts_with("msa-doctor: 1 passed") && last.contains("1 failed"),
        "{last}"
    );

    let verbose = check_run(home.path(), &["-v"]);
    // The passing check gets its own detail line under it.
    let lines: Vec<&str> = verbose.stdout.lines().collect();
    let at = lines.iter().position(|l| l.contains("(cli.open)")).unwrap();
    assert!(lines[at + 1].starts_with("    "), "{}", verbose.stdout);
    assert!(verbose.stdout.len() > normal.stdout.len());

    let both = check_run(home.path(), &["-q", "-v"]);
    assert_eq!(both.code, 2, "-q and -v exclude each other");
    assert!(both.stdout.is_empty());
}

#[test]
fn short_options_n_and_o_and_docs_url() {
    let (home, _open) = two_checks();
    let o = check_run(home.path(), &["-o", "json", "-n", "shop"]);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["target"]["namespace"], "shop");
    // A check without a section in docs/checks.md has no docs_url; built-ins do.
    let c = v["checks"].as_array().unwrap();
    let mine: Vec<&Value> = c.iter().filter(|c| c["category"] == "cli").collect();
    assert_eq!(mine.len(), 2);
    assert!(
        mine.iter().all(|c| c.get("docs_url") == Some(&Value::Null)),
        "{}",
        o.stdout
    );
    let home2 = tempfile::tempdir().unwrap();
    let mut c = cmd(home2.path());
    c.args([
        "--no-kube",
        "-o",
        "json",
        "--timeout",
        "1s",
        "--only",
        "access.grafana",
    ])
    .args(["--grafana-url", "http://127.0.0.1:9"]);
    let o = run(c);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["checks"][0]["docs_url"], "docs/checks.md#accessgrafana");
    // The human report points at the embedded docs, which work from an installed binary.
    let mut c = cmd(home2.path());
    c.args([
        "--no-kube",
        "--color",
        "never",
        "--timeout",
        "1s",
        "--only",
        "access.grafana",
    ])
    .args(["--grafana-url", "http://127.0.0.1:9"]);
    let o = run(c);
    assert!(
        o.stdout.contains("see msa-doctor docs access.grafana"),
        "{}",
        o.stdout
    );
}

#[test]
fn an_output_a_command_cannot_write_is_exit_2_naming_those_it_can() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["list", "-o", "prometheus"]);
    let o = run(c);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("human, json"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    let mut c = cmd(home.path());
    c.args(["explain", "up", "-o", "junit"]);
    let o = run(c);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("human, json"), "{}", o.stderr);
}

#[test]
fn through_a_kubectl_plugin_link_help_says_kubectl_msa_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-msa_doctor");
    let target = assert_cmd::cargo::cargo_bin("msa-doctor");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&target, &link).unwrap();
    let o = std::process::Command::new(&link)
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    assert!(
        help.contains("Usage: kubectl msa-doctor [OPTIONS]"),
        "{help}"
    );
    assert!(!help.contains("Usage: msa-doctor"), "{help}");
    // A usage error names it the same way, and runs the same code.
    let o = std::process::Command::new(&link)
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kubectl msa-doctor"));
    let o = std::process::Command::new(&link)
        .arg("version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("msa-doctor "));
}

#[test]
fn completions_generate_for_every_shell_and_bash_accepts_its_own() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let mut c = cmd(home.path());
        c.args(["completion", shell]);
        let o = run(c);
        assert_eq!(o.code, 0, "{shell}: {}", o.stderr);
        assert!(o.stdout.contains("namespace"), "{shell}");
        assert!(o.stdout.contains("serve"), "{shell}");
        if shell == "bash" {
            let f = home.path().join("msa-doctor.bash");
            std::fs::write(&f, &o.stdout).unwrap();
            let n = std::process::Command::new("bash")
                .arg("-n")
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                n.status.success(),
                "bash -n: {}",
                String::from_utf8_lossy(&n.stderr)
            );
            // Sourcing it registers the completion function.
            let s = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("source {} && complete -p msa-doctor", f.display()))
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&s.stdout).contains("msa-doctor"),
                "{s:?}"
            );
        }
    }
    let mut c = cmd(home.path());
    c.args(["completion", "tcsh"]);
    assert_eq!(run(c).code, 2);
}

#[test]
fn man_version_and_docs() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.arg("man");
    let o = run(c);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.contains(".TH msa-doctor 1"),
        "{}",
        &o.stdout[..200]
    );
    assert!(o.stdout.contains("namespace"));
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        // man itself can format it without complaint.
        let f = home.path().join("msa-doctor.1");
        std::fs::write(&f, &o.stdout).unwrap();
        let m = std::process::Command::new("man")
            .arg("-l")
            .arg(&f)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        if m.status.success() {
            assert!(String::from_utf8_lossy(&m.stdout).contains("msa-doctor"));
        }
    }

    let mut c = cmd(home.path());
    c.arg("version");
    let o = run(c);
    let v = o.stdout.trim();
    assert!(
        v.starts_with(&format!(
            "msa-doctor {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{v}"
    );
    assert!(v.contains(", built 20") && v.ends_with(')'), "{v}");
    // `--version` says the same; `-V` stays short.
    let mut c = cmd(home.path());
    c.arg("--version");
    assert_eq!(run(c).stdout.trim(), v);
    let mut c = cmd(home.path());
    c.arg("-V");
    assert_eq!(
        run(c).stdout.trim(),
        format!("msa-doctor {}", env!("CARGO_PKG_VERSION"))
    );

    let mut c = cmd(home.path());
    c.args(["docs", "prometheus.targets"]);
    let o = run(c);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.starts_with("## prometheus.targets\n"),
        "{}",
        o.stdout
    );
    let mut c = cmd(home.path());
    c.arg("docs");
    let o = run(c);
    assert!(o.stdout.contains("\n  panel.orders\n"));
    let mut c = cmd(home.path());
    c.args(["docs", "prometheus.nope"]);
    let o = run(c);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("prometheus.nope"));
}

#[test]
fn help_shows_defaults_and_wraps_to_the_terminal() {
    let home = tempfile::tempdir().unwrap();
    let help = |cols: &str| {
        let mut c = cmd(home.path());
        c.args(["check", "--help"]).env("COLUMNS", cols);
        run(c).stdout
    };
    let wide = help("200");
    for d in [
        "[default: metacoding]",
        "[default: monitoring]",
        "[default: http://localhost:3000]",
        "[default: 15m]",
        "[default: 5s]",
        "[default: human]",
    ] {
        assert!(wide.contains(d), "no {d} in\n{wide}");
    }
    let narrow = help("60");
    // Only a word longer than the room left (the default list of services) may stick out.
    assert!(
        narrow
            .lines()
            .all(|l| l.chars().count() <= 60 || !l.trim().contains(' ')),
        "{narrow}"
    );
    assert!(narrow.lines().count() > wide.lines().count());
}

#[test]
fn the_user_config_file_and_config_show_without_secrets() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("msa-doctor")).unwrap();
    std::fs::write(
        xdg.join("msa-doctor/config.toml"),
        "# mine\nnamespace = \"from-xdg\"\ntopic = \"t1\"\n",
    )
    .unwrap();
    let show = |extra: &[&str], password: Option<&str>| {
        let mut c = cmd(home.path());
        c.env("XDG_CONFIG_HOME", &xdg)
            .args(["config", "show"])
            .args(extra);
        if let Some(p) = password {
            c.env("GRAFANA_PASSWORD", p);
        }
        run(c)
    };
    let o = show(&[], Some("s3cret-pw"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stdout.contains("s3cret-pw"), "{}", o.stdout);
    let row = |key: &str| {
        o.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {}", o.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let cfg = xdg.join("msa-doctor/config.toml").display().to_string();
    assert_eq!(
        row("namespace"),
        ["namespace", "from-xdg", "file", &format!("{cfg}:2")]
    );
    assert_eq!(row("topic"), ["topic", "t1", "file", &format!("{cfg}:3")]);
    assert_eq!(
        row("grafana-password"),
        ["grafana-password", "set", "env", "GRAFANA_PASSWORD"]
    );
    assert_eq!(row("window"), ["window", "15m", "default"]);
    // A flag beats the file.
    let o = show(&["-n", "flagged"], None);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["namespace", "flagged", "flag", "-n/--namespace"]),
        "{}",
        o.stdout
    );
    // ./msa-doctor.toml comes first, and the user's file is then not read at all.
    std::fs::write(
        home.path().join("msa-doctor.toml"),
        "namespace = \"local\"\n",
    )
    .unwrap();
    let o = show(&[], None);
    assert!(
        o.stdout.starts_with("config file: msa-doctor.toml\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("topic                 order-created"),
        "{}",
        o.stdout
    );
    // The check run reads the same file.
    let mut c = cmd(home.path());
    c.env("XDG_CONFIG_HOME", &xdg)
        .args([
            "--no-kube",
            "-o",
            "json",
            "--only",
            "access.grafana",
            "--timeout",
            "1s",
        ])
        .args(["--grafana-url", "http://127.0.0.1:9"]);
    let v: Value = serde_json::from_str(&run(c).stdout).unwrap();
    assert_eq!(v["target"]["namespace"], "local");
    // A bad value in the user's file is exit 2 naming it and its line.
    std::fs::remove_file(home.path().join("msa-doctor.toml")).unwrap();
    std::fs::write(xdg.join("msa-doctor/config.toml"), "\nwindow = \"soon\"\n").unwrap();
    let o = show(&[], None);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains(&cfg) && o.stderr.contains(":2"),
        "{}",
        o.stderr
    );
}

/// The `msa-doctor ...` command lines of a CI example's shell steps, without redirections.
fn msa_doctor_lines(yaml: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in yaml.lines() {
        let l = line
            .trim()
            .trim_start_matches("- ")
            .trim_start_matches("run: ");
        if !l.starts_with("msa-doctor ") {
            continue;
        }
        let cmd = l.split(['>', '|']).next().unwrap_or_default();
        out.push(cmd.split_whitespace().map(String::from).collect());
    }
    out
}

#[test]
fn the_ci_examples_are_yaml_and_run_command_lines_msa_doctor_accepts() {
    for (file, must) in [
        (
            "examples/github-actions.yml",
            &[
                "id-token: write",
                "aws eks update-kubeconfig",
                "port-forward",
                "GITHUB_STEP_SUMMARY",
                "upload-sarif",
            ][..],
        ),
        (
            "examples/gitlab-ci.yml",
            &[
                "id_tokens",
                "assume-role-with-web-identity",
                "aws eks update-kubeconfig",
                "port-forward",
                "junit: report.xml",
            ][..],
        ),
    ] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let _: serde_json::Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
        for m in must {
            assert!(text.contains(m), "{file} lacks {m}");
        }
        let lines = msa_doctor_lines(&text);
        assert!(
            lines
                .iter()
                .any(|l| l.join(" ") == "msa-doctor --wait 3m -o junit"),
            "{file}: {lines:?}"
        );
        for argv in lines {
            // `lint`'s options belong to the lint rewrite (`--output sarif`); its own tests
            // cover them.
            if argv.get(1).is_some_and(|a| a == "lint") {
                continue;
            }
            if let Err(e) = msa_doctor::cli::try_parse_from(&argv) {
                panic!("{file}: msa-doctor refuses {argv:?}: {e}");
            }
        }
    }
}
