//! The check-file loader and the config file: every invalid definition is a `ConfigError`
//! naming the file, the line and the field (messages snapshot-tested), valid ones become a
//! plan, and `msa-doctor.toml` merges under flags and environment.
//!
//! Nothing here depends on the built-in checklist: user files use categories of their own,
//! and the built-in replacement is tested over a made-up built-in list.

use insta::assert_snapshot;
use msa_doctor::cli::{CheckArgs, ColorChoice, Format, ReportArgs};
use msa_doctor::config::{self, ConfigError, Plan};
use msa_doctor::engine::{Origin, Severity};
use msa_doctor::settings::{self, Env, FileConfig, GrafanaAuth, Settings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Loads one user file called `bad.toml` and returns the error it must give.
fn error_of(text: &str) -> ConfigError {
    match config::load_texts(&[("bad.toml", text)]) {
        Ok(plan) => panic!("expected an error, got {plan:?}"),
        Err(e) => e,
    }
}

/// The error as the user reads it, with the list of known kinds (which grows) folded.
fn shown(e: &ConfigError) -> String {
    e.to_string()
        .replace(&msa_doctor::probes::KINDS.join(", "), "<known kinds>")
}

/// Asserts the file, line and field of an `Invalid` error.
fn assert_at(e: &ConfigError, file: &str, line: usize, field: &str) {
    match e {
        ConfigError::Invalid {
            path,
            line: l,
            field: f,
            ..
        } => {
            assert_eq!(path, Path::new(file), "{e}");
            assert_eq!((*l, f.as_str()), (line, field), "{e}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn duplicate_id() {
    let e = error_of(
        r#"[[check]]
id = "mine.port"
title = "first"
kind = "tcp"
args = { address = "127.0.0.1:1" }

[[check]]
id = "mine.port"
title = "second"
kind = "tcp"
args = { address = "127.0.0.1:2" }
"#,
    );
    assert_at(&e, "bad.toml", 8, "id");
    assert_snapshot!(shown(&e), @r#"bad.toml:8: id: duplicate id "mine.port" (first defined in bad.toml:2)"#);
}

#[test]
fn duplicate_id_across_user_files() {
    let one =
        "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\nargs = { address = \"h:1\" }\n";
    let e = config::load_texts(&[("one.toml", one), ("two.toml", one)]).unwrap_err();
    assert_at(&e, "two.toml", 2, "id");
    assert_snapshot!(shown(&e), @r#"two.toml:2: id: duplicate id "mine.a" (first defined in one.toml:2)"#);
}

#[test]
fn unknown_kind() {
    let e = error_of(
        r#"[[check]]
id = "mine.thing"
title = "t"
kind = "no-such-kind"
"#,
    );
    assert_at(&e, "bad.toml", 4, "kind");
    assert_snapshot!(shown(&e), @r#"bad.toml:4: kind: unknown kind "no-such-kind"; known kinds: <known kinds>"#);
}

#[test]
fn tcp_without_address() {
    let e = error_of(
        r#"[[check]]
id = "mine.port"
title = "t"
kind = "tcp"
args = { host = "127.0.0.1" }
"#,
    );
    assert_at(&e, "bad.toml", 5, "args");
    assert_snapshot!(shown(&e), @"bad.toml:5: args: unknown field `host`, expected `address`");
    let e = error_of("[[check]]\nid = \"mine.port\"\ntitle = \"t\"\nkind = \"tcp\"\n");
    assert_at(&e, "bad.toml", 1, "args");
    assert_snapshot!(shown(&e), @"bad.toml:1: args: missing field `address`");
}

#[test]
fn tcp_address_without_port() {
    let e = error_of(
        "[[check]]\nid = \"mine.port\"\ntitle = \"t\"\nkind = \"tcp\"\nargs = { address = \"localhost\" }\n",
    );
    assert_at(&e, "bad.toml", 5, "args");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: args: address "localhost" is not host:port"#);
}

#[test]
fn http_with_a_bad_url() {
    let e = error_of(
        r#"# a comment line first
[[check]]
id = "mine.web"
title = "t"
kind = "http"

[check.args]
url = "localhost:3000/api/health"
"#,
    );
    assert_at(&e, "bad.toml", 7, "args");
    assert_snapshot!(shown(&e), @r#"bad.toml:7: args: url "localhost:3000/api/health" is not an http(s) URL"#);
}

#[test]
fn http_with_bad_expectations() {
    let base = "[[check]]\nid = \"mine.web\"\ntitle = \"t\"\nkind = \"http\"\n";
    let cases = [
        "args = { url = \"http://h/\", expect_status = 999 }",
        "args = { url = \"http://h/\", json_equals = \"ok\" }",
        "args = { url = \"http://h/\", json_pointer = \"database\" }",
        "args = { url = \"http://h/\", method = \"GE T\" }",
    ];
    let all: Vec<String> = cases
        .iter()
        .map(|c| {
            let e = error_of(&format!("{base}{c}\n"));
            assert_at(&e, "bad.toml", 5, "args");
            shown(&e)
        })
        .collect();
    assert_snapshot!(all.join("\n"), @r#"
    bad.toml:5: args: expect_status 999 is not an HTTP status
    bad.toml:5: args: json_equals needs json_pointer
    bad.toml:5: args: json_pointer "database" must start with '/' (RFC 6901, e.g. "/database")
    bad.toml:5: args: method "GE T" is not an HTTP method
    "#);
}

#[test]
fn exec_without_command() {
    let e = error_of(
        "[[check]]\nid = \"mine.plugin\"\ntitle = \"t\"\nkind = \"exec\"\nargs = { command = \" \" }\n",
    );
    assert_at(&e, "bad.toml", 5, "args");
    assert_snapshot!(shown(&e), @"bad.toml:5: args: command must not be empty");
}

#[test]
fn missing_need() {
    let e = error_of(
        r#"[[check]]
id = "mine.a"
title = "t"
kind = "tcp"
needs = ["mine.nowhere"]
args = { address = "h:1" }
"#,
    );
    assert_at(&e, "bad.toml", 5, "needs");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: needs: "mine.a" needs "mine.nowhere", which no check defines"#);
}

#[test]
fn needs_itself() {
    let e = error_of(
        "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\nneeds = [\"mine.a\"]\nargs = { address = \"h:1\" }\n",
    );
    assert_at(&e, "bad.toml", 5, "needs");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: needs: "mine.a" needs itself"#);
}

#[test]
fn cycle() {
    let e = error_of(
        r#"[[check]]
id = "mine.a"
title = "t"
kind = "tcp"
needs = ["mine.b"]
args = { address = "h:1" }

[[check]]
id = "mine.b"
title = "t"
kind = "tcp"
needs = ["mine.a"]
args = { address = "h:1" }
"#,
    );
    assert_at(&e, "bad.toml", 5, "needs");
    assert_snapshot!(shown(&e), @"bad.toml:5: needs: dependency cycle: mine.a -> mine.b -> mine.a");
}

#[test]
fn longer_cycle_across_files() {
    let check = |id: &str, need: &str| {
        format!(
            "[[check]]\nid = \"{id}\"\ntitle = \"t\"\nkind = \"tcp\"\nneeds = [\"{need}\"]\nargs = {{ address = \"h:1\" }}\n"
        )
    };
    let a = check("mine.a", "mine.b");
    let b = format!(
        "{}\n{}",
        check("mine.b", "mine.c"),
        check("mine.c", "mine.a")
    );
    let e = config::load_texts(&[("a.toml", &a), ("b.toml", &b)]).unwrap_err();
    assert_at(&e, "a.toml", 5, "needs");
    assert_snapshot!(shown(&e), @"a.toml:5: needs: dependency cycle: mine.a -> mine.b -> mine.c -> mine.a");
}

#[test]
fn bad_duration() {
    let e = error_of(
        r#"[[check]]
id = "mine.a"
title = "t"
kind = "tcp"
timeout = "5 parsecs"
args = { address = "h:1" }
"#,
    );
    assert_at(&e, "bad.toml", 5, "timeout");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: timeout: invalid duration "5 parsecs": unknown time unit "parsecs", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations) (try 5s, 15m or 1h)"#);
    let e = error_of(
        "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\ntimeout = \"0s\"\nargs = { address = \"h:1\" }\n",
    );
    assert_at(&e, "bad.toml", 5, "timeout");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: timeout: invalid duration "0s": must be more than zero"#);
}

#[test]
fn unknown_key() {
    let e = error_of(
        r#"[[check]]
id = "mine.a"
title = "t"
kind = "tcp"
args = { address = "h:1" }
timout = "5s"
"#,
    );
    assert_at(&e, "bad.toml", 6, "timout");
    assert_snapshot!(shown(&e), @"bad.toml:6: timout: unknown field `timout`, expected one of `id`, `category`, `title`, `kind`, `needs`, `needs_via_grafana`, `severity`, `timeout`, `retry`, `remedy`, `docs`, `args`");
}

#[test]
fn unknown_top_level_table() {
    let e = error_of("[[checks]]\nid = \"mine.a\"\n");
    assert_at(&e, "bad.toml", 1, "checks");
    assert_snapshot!(shown(&e), @"bad.toml:1: checks: unknown field `checks`, expected `check`");
}

#[test]
fn toml_syntax_error() {
    let e = error_of(
        r#"[[check]]
id = "mine.a"
title = "an unterminated string
kind = "tcp"
"#,
    );
    // The field is the key whose value broke, when the line has one.
    assert_at(&e, "bad.toml", 3, "title");
    assert_snapshot!(shown(&e), @"bad.toml:3: title: invalid basic string, expected `\"`");
    let e = error_of("# checks\n\n[[check]\nid = \"mine.a\"\n");
    assert_at(&e, "bad.toml", 3, "toml");
    assert_snapshot!(shown(&e), @"bad.toml:3: toml: unclosed array table, expected `]`");
}

#[test]
fn wrong_type_names_the_key() {
    let e = error_of(
        "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\nneeds = \"mine.b\"\nargs = { address = \"h:1\" }\n",
    );
    assert_at(&e, "bad.toml", 5, "needs");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: needs: invalid type: string "mine.b", expected a sequence"#);
}

#[test]
fn missing_title() {
    let e = error_of("[[check]]\nid = \"mine.a\"\nkind = \"tcp\"\nargs = { address = \"h:1\" }\n");
    assert_at(&e, "bad.toml", 1, "title");
    assert_snapshot!(shown(&e), @"bad.toml:1: title: missing field `title`");
    let e = error_of(
        "[[check]]\nid = \"mine.a\"\ntitle = \"  \"\nkind = \"tcp\"\nargs = { address = \"h:1\" }\n",
    );
    assert_at(&e, "bad.toml", 3, "title");
    assert_snapshot!(shown(&e), @"bad.toml:3: title: must not be empty");
}

#[test]
fn bad_severity() {
    let e = error_of(
        r#"[[check]]
id = "mine.a"
title = "t"
kind = "tcp"
args = { address = "h:1" }
severity = "critical"
"#,
    );
    assert_at(&e, "bad.toml", 6, "severity");
    assert_snapshot!(shown(&e), @r#"bad.toml:6: severity: "critical" is not "fail" or "warn""#);
}

#[test]
fn bad_id_format() {
    let ids = [
        "nocategory",
        "Mine.Port",
        "mine.port_number",
        "mine.",
        ".port",
        "mine.-port",
        "mine.a.b",
        "mine.a--b",
    ];
    let all: Vec<String> = ids
        .iter()
        .map(|id| {
            let e = error_of(&format!(
                "[[check]]\nid = \"{id}\"\ntitle = \"t\"\nkind = \"tcp\"\nargs = {{ address = \"h:1\" }}\n"
            ));
            assert_at(&e, "bad.toml", 2, "id");
            shown(&e)
        })
        .collect();
    assert_snapshot!(all.join("\n"), @r#"
    bad.toml:2: id: "nocategory" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: "Mine.Port" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: "mine.port_number" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: "mine." is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: ".port" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: "mine.-port" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: "mine.a.b" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    bad.toml:2: id: "mine.a--b" is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)
    "#);
}

#[test]
fn category_must_be_the_id_prefix() {
    let e = error_of(
        "[[check]]\nid = \"mine.a\"\ncategory = \"yours\"\ntitle = \"t\"\nkind = \"tcp\"\nargs = { address = \"h:1\" }\n",
    );
    assert_at(&e, "bad.toml", 3, "category");
    assert_snapshot!(shown(&e), @r#"bad.toml:3: category: "yours" is not the prefix of the id "mine.a" (expected "mine")"#);
}

const EVERY_FIELD: &str = r#"# Every field a check may have.
[[check]]
id = "mine.port"
category = "mine"
title = "Something listens on the port"
kind = "tcp"
severity = "fail"
timeout = "1s"
retry = false
remedy = "start it: kubectl -n {namespace} port-forward svc/x 9:9"
docs = "https://example.org/docs#port"
args = { address = "127.0.0.1:9" }

[[check]]
id = "mine.web"
title = "The web page answers"
kind = "http"
needs = ["mine.port"]
severity = "warn"
timeout = "1m 30s"

[check.args]
url = "http://127.0.0.1:9/health"
method = "POST"
headers = { Accept = "application/json" }
expect_status = [200, 204]
body_contains = "UP"
json_pointer = "/status"
json_equals = "UP"
body = "{}"

[[check]]
id = "mine.plugin"
title = "The plugin is happy"
kind = "exec"
needs = ["mine.web", "mine.port"]
args = { command = "./plugins/happy.sh", args = ["--quiet"], env = { LEVEL = "2" } }
"#;

#[test]
fn a_valid_file_with_every_field() {
    let plan = config::load_texts_over(&[], &[("good.toml", EVERY_FIELD)]).unwrap();
    let ids: Vec<&str> = plan.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["mine.port", "mine.web", "mine.plugin"]);
    let port = &plan.checks[0];
    assert_eq!(port.category, "mine");
    assert_eq!(port.title, "Something listens on the port");
    assert_eq!(port.kind, "tcp");
    assert!(port.needs.is_empty());
    assert_eq!(port.severity, Severity::Fail);
    assert_eq!(port.timeout, Some(Duration::from_secs(1)));
    assert!(!port.retry);
    assert_eq!(
        port.remedy.as_deref(),
        Some("start it: kubectl -n {namespace} port-forward svc/x 9:9")
    );
    assert_eq!(port.docs.as_deref(), Some("https://example.org/docs#port"));
    assert_eq!(port.origin, Origin::File(PathBuf::from("good.toml")));

    let web = &plan.checks[1];
    assert_eq!(
        web.category, "mine",
        "the category defaults to the id's prefix"
    );
    assert_eq!(web.needs, ["mine.port"]);
    assert_eq!(web.severity, Severity::Warn);
    assert_eq!(web.timeout, Some(Duration::from_secs(90)));
    assert!(web.retry, "retry defaults to on");
    assert_eq!(web.remedy, None);

    let plugin = &plan.checks[2];
    assert_eq!(plugin.kind, "exec");
    assert_eq!(plugin.needs, ["mine.web", "mine.port"]);
    assert_eq!(
        plugin.timeout, None,
        "no timeout: the run's --timeout applies"
    );
}

#[test]
fn checks_come_in_dependency_order() {
    let text = r#"
[[check]]
id = "mine.c"
title = "t"
kind = "tcp"
needs = ["mine.b"]
args = { address = "h:1" }

[[check]]
id = "mine.free"
title = "t"
kind = "tcp"
args = { address = "h:1" }

[[check]]
id = "mine.b"
title = "t"
kind = "tcp"
needs = ["mine.a"]
args = { address = "h:1" }

[[check]]
id = "mine.a"
title = "t"
kind = "tcp"
args = { address = "h:1" }
"#;
    let plan = config::load_texts_over(&[], &[("order.toml", text)]).unwrap();
    let ids: Vec<&str> = plan.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["mine.a", "mine.b", "mine.c", "mine.free"]);
}

const FAKE_BUILT_IN: &str = r#"
[[check]]
id = "base.reach"
title = "built-in reach"
kind = "tcp"
args = { address = "127.0.0.1:1" }

[[check]]
id = "base.after"
title = "built-in after"
kind = "tcp"
needs = ["base.reach"]
args = { address = "127.0.0.1:2" }
"#;

#[test]
fn a_file_id_equal_to_a_built_in_replaces_it() {
    let mine = r#"
[[check]]
id = "base.reach"
title = "my own reach"
kind = "http"
args = { url = "http://127.0.0.1:1/" }
"#;
    let plan =
        config::load_texts_over(&[("base.toml", FAKE_BUILT_IN)], &[("mine.toml", mine)]).unwrap();
    let rows: Vec<(String, String, String)> = plan
        .checks
        .iter()
        .map(|c| (c.id.clone(), c.title.clone(), c.origin.to_string()))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "base.reach".to_string(),
                "my own reach".to_string(),
                "mine.toml".to_string()
            ),
            (
                "base.after".to_string(),
                "built-in after".to_string(),
                "built-in (checks/base.toml)".to_string()
            ),
        ]
    );
    assert_eq!(plan.checks[0].kind, "http");

    // Two built-ins with one id are a bug of the build, named like any duplicate.
    let e = config::load_texts_over(
        &[("base.toml", FAKE_BUILT_IN), ("again.toml", FAKE_BUILT_IN)],
        &[],
    )
    .unwrap_err();
    assert_at(&e, "checks/again.toml", 3, "id");
}

#[test]
fn the_built_in_checklist_is_valid() {
    let plan: Plan = config::load_texts(&[]).expect("checks/*.toml must be valid");
    for c in &plan.checks {
        assert!(
            matches!(c.origin, Origin::BuiltIn(_)),
            "{} is not built in",
            c.id
        );
    }
}

/// A temporary folder with files in it.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn load_reads_the_toml_files_of_a_folder() {
    let dir = folder(&[
        (
            "b.toml",
            "[[check]]\nid = \"mine.b\"\ntitle = \"t\"\nkind = \"tcp\"\nneeds = [\"mine.a\"]\nargs = { address = \"h:1\" }\n",
        ),
        (
            "a.toml",
            "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\nargs = { address = \"h:1\" }\n",
        ),
        ("notes.txt", "not a check file"),
        ("sub/c.toml", "this is not even toml ["),
    ]);
    let plan = config::load(&[dir.path().to_path_buf()]).unwrap();
    let mine: Vec<(&str, String)> = plan
        .checks
        .iter()
        .filter(|c| c.category == "mine")
        .map(|c| (c.id.as_str(), c.origin.to_string()))
        .collect();
    let at = |f: &str| dir.path().join(f).display().to_string();
    assert_eq!(mine, [("mine.a", at("a.toml")), ("mine.b", at("b.toml"))]);

    // A single file may be given instead of a folder.
    let plan = config::load(&[dir.path().join("a.toml")]).unwrap();
    assert!(plan.checks.iter().any(|c| c.id == "mine.a"));
}

#[test]
fn load_names_the_file_and_line_of_a_bad_file() {
    let dir = folder(&[(
        "broken.toml",
        "[[check]]\nid = \"x.y\"\ntitle = \"t\"\nkind = \"no-such-kind\"\n",
    )]);
    let e = config::load(&[dir.path().to_path_buf()]).unwrap_err();
    assert_at(
        &e,
        &dir.path().join("broken.toml").display().to_string(),
        4,
        "kind",
    );
}

#[test]
fn load_of_a_missing_folder_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = config::load(std::slice::from_ref(&missing)).unwrap_err();
    match &e {
        ConfigError::Read { path, message } => {
            assert_eq!(path, &missing);
            assert!(
                message.starts_with("cannot read the check folder"),
                "{message}"
            );
        }
        other => panic!("expected Read, got {other:?}"),
    }
}

// ---- msa-doctor.toml -------------------------------------------------------------------

fn load_config(text: &str) -> (tempfile::TempDir, Result<Option<FileConfig>, ConfigError>) {
    let dir = folder(&[("msa-doctor.toml", text)]);
    let r = FileConfig::load(Some(&dir.path().join("msa-doctor.toml")));
    (dir, r)
}

#[test]
fn config_file_unknown_key_names_its_line() {
    let (dir, r) = load_config("namespace = \"shop\"\n\ngrafana-uri = \"http://x:3000\"\n");
    let e = r.unwrap_err();
    let file = dir.path().join("msa-doctor.toml");
    assert_at(&e, &file.display().to_string(), 3, "grafana-uri");
    let msg = e
        .to_string()
        .replace(&dir.path().display().to_string(), "<dir>");
    assert_snapshot!(msg, @"<dir>/msa-doctor.toml:3: grafana-uri: unknown field `grafana-uri`, expected one of `grafana-url`, `grafana-user`, `grafana-password-file`, `grafana-token-file`, `prometheus-url`, `kubeconfig`, `context`, `no-kube`, `namespace`, `monitoring-namespace`, `services`, `topic`, `window`, `timeout`, `wait`, `jobs`, `only`, `skip`, `checks`, `output`, `strict`, `color`");
}

#[test]
fn config_file_bad_values_name_their_line() {
    let cases = [
        (
            "namespace = \"shop\"\nwindow = \"fortnight\"\n",
            2,
            "window",
        ),
        ("\ntimeout = \"0ms\"\n", 2, "timeout"),
        ("output = \"yaml\"\n", 1, "output"),
        ("jobs = -1\n", 1, "jobs"),
        ("grafana-url = \"ftp://grafana\"\n", 1, "grafana-url"),
        ("namespace = \"Shop_1\"\n", 1, "namespace"),
        ("jobs = 0\n", 1, "jobs"),
        ("services = []\n", 1, "services"),
    ];
    let mut all = Vec::new();
    for (text, line, field) in cases {
        let (dir, r) = load_config(text);
        let file = dir.path().join("msa-doctor.toml");
        let e = match r {
            Err(e) => e,
            Ok(f) => settings::resolve(&CheckArgs::default(), &Env::default(), f.as_ref())
                .expect_err(text),
        };
        assert_at(&e, &file.display().to_string(), line, field);
        all.push(
            e.to_string()
                .replace(&dir.path().display().to_string(), "<dir>"),
        );
    }
    assert_snapshot!(all.join("\n"));
}

#[test]
fn config_file_absent_is_not_an_error_but_an_explicit_missing_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let e = FileConfig::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

fn resolve(args: &CheckArgs, env: &Env, file: Option<&FileConfig>) -> Settings {
    settings::resolve(args, env, file).unwrap()
}

fn password(s: &Settings) -> (String, bool) {
    match &s.grafana_auth {
        GrafanaAuth::Password {
            password,
            defaulted,
            ..
        } => (password.expose().to_string(), *defaulted),
        GrafanaAuth::Token(_) => panic!("expected a password"),
    }
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let dir = folder(&[
        ("flag-password", "from-flag\n"),
        ("file-password", "from-file\n"),
        (
            "msa-doctor.toml",
            r#"
grafana-url = "http://file-grafana:3000/"
grafana-password-file = "file-password"
namespace = "file-ns"
window = "1h"
timeout = "9s"
jobs = 3
only = ["file-only"]
output = "json"
color = "always"
strict = true
"#,
        ),
    ]);
    let file = FileConfig::load(Some(&dir.path().join("msa-doctor.toml")))
        .unwrap()
        .unwrap();
    let flags = CheckArgs {
        grafana_url: Some("http://flag-grafana:3000".into()),
        grafana_password_file: Some(dir.path().join("flag-password")),
        namespace: Some("flag-ns".into()),
        window: Some(Duration::from_secs(300)),
        report: ReportArgs {
            only: vec!["flag-only".into()],
            output: Some(Format::Markdown),
            color: Some(ColorChoice::Never),
            ..Default::default()
        },
        ..Default::default()
    };
    let env = Env {
        grafana_password: Some("from-env".into()),
        no_color: true,
        ..Default::default()
    };

    // Flags win over everything.
    let s = resolve(&flags, &env, Some(&file));
    assert_eq!(s.grafana_url, "http://flag-grafana:3000");
    assert_eq!(password(&s), ("from-flag".into(), false));
    assert_eq!(s.namespace, "flag-ns");
    assert_eq!(s.window, Duration::from_secs(300));
    assert_eq!(s.only, ["flag-only"]);
    assert_eq!(s.output, Format::Markdown);
    assert_eq!(s.color, ColorChoice::Never);

    // Without flags, the environment wins over the file.
    let none = CheckArgs::default();
    let s = resolve(&none, &env, Some(&file));
    assert_eq!(password(&s), ("from-env".into(), false));
    assert_eq!(
        s.color,
        ColorChoice::Never,
        "NO_COLOR beats the file's color"
    );

    // Without flags and environment, the file wins over the defaults.
    let s = resolve(&none, &Env::default(), Some(&file));
    assert_eq!(
        s.grafana_url, "http://file-grafana:3000",
        "trailing slash dropped"
    );
    assert_eq!(password(&s), ("from-file".into(), false));
    assert_eq!(s.namespace, "file-ns");
    assert_eq!(s.window, Duration::from_secs(3600));
    assert_eq!(s.timeout, Duration::from_secs(9));
    assert_eq!(s.jobs, 3);
    assert_eq!(s.only, ["file-only"]);
    assert_eq!(s.output, Format::Json);
    assert_eq!(s.color, ColorChoice::Always);
    assert!(s.strict);

    // Nothing given: the defaults of CONTRACT.md.
    let s = resolve(&none, &Env::default(), None);
    let d = Settings::defaults();
    assert_eq!(s.grafana_url, "http://localhost:3000");
    assert_eq!(password(&s), ("admin".into(), true));
    assert_eq!(s.namespace, "metacoding");
    assert_eq!(s.monitoring_namespace, "monitoring");
    assert_eq!(s.services, d.services);
    assert_eq!(s.topic, "order-created");
    assert_eq!(s.window, Duration::from_secs(15 * 60));
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.wait, None);
    assert_eq!(s.prometheus_url, None);
    assert_eq!(s.output, Format::Human);
    assert_eq!(s.color, ColorChoice::Auto);
    assert!(!s.strict);
}

#[test]
fn a_token_wins_over_a_password_and_never_prints() {
    let env = Env {
        grafana_password: Some("pw-123".into()),
        grafana_token: Some("glsa_secret_token".into()),
        ..Default::default()
    };
    let s = resolve(&CheckArgs::default(), &env, None);
    match &s.grafana_auth {
        GrafanaAuth::Token(t) => assert_eq!(t.expose(), "glsa_secret_token"),
        other => panic!("expected a token, got {other:?}"),
    }
    let debug = format!("{s:?}");
    assert!(!debug.contains("glsa_secret_token"), "{debug}");
    let env = Env {
        grafana_password: Some("pw-123".into()),
        ..Default::default()
    };
    let debug = format!("{:?}", resolve(&CheckArgs::default(), &env, None));
    assert!(!debug.contains("pw-123"), "{debug}");
}

#[test]
fn relative_folders_in_the_config_file_resolve_against_its_folder() {
    let dir = folder(&[
        (
            "conf/msa-doctor.toml",
            "checks = [\"my-checks\", \"/abs/checks\"]\ngrafana-password-file = \"secret/pw\"\n",
        ),
        ("conf/secret/pw", "hunter2\n"),
    ]);
    let file = FileConfig::load(Some(&dir.path().join("conf/msa-doctor.toml")))
        .unwrap()
        .unwrap();
    let flags = CheckArgs {
        report: ReportArgs {
            checks: vec![PathBuf::from("from-flag")],
            ..Default::default()
        },
        ..Default::default()
    };
    let s = resolve(&flags, &Env::default(), Some(&file));
    assert_eq!(
        s.check_dirs,
        [
            PathBuf::from("from-flag"),
            dir.path().join("conf/my-checks"),
            PathBuf::from("/abs/checks"),
        ]
    );
    assert_eq!(password(&s), ("hunter2".into(), false));
}

#[test]
fn a_file_replaces_a_real_built_in_check() {
    // `access.grafana` is a contract id, so the built-in checklist has it.
    let mine = r#"
[[check]]
id = "access.grafana"
title = "my own Grafana reachability"
kind = "tcp"
args = { address = "{grafana_host}" }
"#;
    let built_in = config::load_texts(&[]).unwrap();
    let before = built_in
        .checks
        .iter()
        .find(|c| c.id == "access.grafana")
        .expect("the built-in checklist defines access.grafana");
    assert!(matches!(before.origin, Origin::BuiltIn(_)));
    let plan = config::load_texts(&[("mine.toml", mine)]).unwrap();
    let ids = |p: &Plan| p.checks.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plan), ids(&built_in), "same checks, same order");
    let replaced = plan
        .checks
        .iter()
        .find(|c| c.id == "access.grafana")
        .unwrap();
    assert_eq!(replaced.origin, Origin::File(PathBuf::from("mine.toml")));
    assert_eq!(replaced.title, "my own Grafana reachability");
    assert_eq!(replaced.kind, "tcp");
}

#[test]
fn an_absurd_duration_in_a_check_file_names_file_line_and_key() {
    let e = error_of(
        "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\ntimeout = \"500000000000y\"\nargs = { address = \"h:1\" }\n",
    );
    assert_at(&e, "bad.toml", 5, "timeout");
    assert_snapshot!(shown(&e), @r#"bad.toml:5: timeout: invalid duration "500000000000y": longer than 10 years (try 5s, 15m or 1h)"#);
}

#[test]
fn an_absurd_duration_in_the_config_file_names_its_key() {
    for (key, value) in [
        ("timeout", "500000000000y"),
        ("wait", "500000000000y"),
        ("window", "11y"),
        ("window", "0s"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("msa-doctor.toml");
        std::fs::write(
            &path,
            format!("namespace = \"shop\"\n{key} = \"{value}\"\n"),
        )
        .unwrap();
        let file = FileConfig::load(Some(&path)).unwrap();
        let e =
            settings::resolve(&CheckArgs::default(), &Env::default(), file.as_ref()).unwrap_err();
        assert_at(&e, &path.display().to_string(), 2, key);
        assert!(e.to_string().contains(value), "{e}");
    }
}

/// A check folder holding one good check file and `bad`, a `*.toml` entry made by `make`.
fn folder_with(make: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        "[[check]]\nid = \"mine.a\"\ntitle = \"t\"\nkind = \"tcp\"\nargs = { address = \"h:1\" }\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    make(&bad);
    (dir, bad)
}

fn read_error_of(dir: &Path) -> (PathBuf, String) {
    match config::load(&[dir.to_path_buf()]) {
        Ok(plan) => panic!(
            "expected an error, got {:?}",
            plan.checks.iter().map(|c| &c.id).collect::<Vec<_>>()
        ),
        Err(ConfigError::Read { path, message }) => (path, message),
        Err(e) => panic!("expected a read error, got {e}"),
    }
}

#[cfg(unix)]
#[test]
fn a_dangling_check_file_is_an_error_naming_it() {
    let (dir, bad) = folder_with(|bad| {
        std::os::unix::fs::symlink("/no/such/check.toml", bad).unwrap();
    });
    let (path, message) = read_error_of(dir.path());
    assert_eq!(path, bad);
    assert!(
        message.contains("a symbolic link to /no/such/check.toml"),
        "{message}"
    );
}

#[test]
fn a_folder_named_like_a_check_file_is_an_error_naming_it() {
    let (dir, bad) = folder_with(|bad| std::fs::create_dir(bad).unwrap());
    let (path, message) = read_error_of(dir.path());
    assert_eq!(path, bad);
    assert!(message.contains("a folder"), "{message}");
}

#[cfg(unix)]
#[test]
fn an_unreadable_check_file_is_an_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, bad) = folder_with(|bad| {
        std::fs::write(bad, "[[check]]\n").unwrap();
        std::fs::set_permissions(bad, std::fs::Permissions::from_mode(0o000)).unwrap();
    });
    if std::fs::read(&bad).is_ok() {
        // Root reads every file: nothing to test here.
        eprintln!("skipped: this user reads files without read permission");
        return;
    }
    let (path, message) = read_error_of(dir.path());
    assert_eq!(path, bad);
    assert!(message.contains("cannot read the check file"), "{message}");
}
