//! The Markdown report, for a pull-request comment or a GitHub job summary (`$GITHUB_STEP_SUMMARY`):
//! a heading, the counts, what was checked, one table row per check, then a "Remedies" section with
//! the remedy of every check that warned, failed or errored in a fenced code block.
//!
//! Table cells are escaped (`|`, newlines, `<`), and fences are longer than any run of backticks
//! in the remedy, so no check output can break the layout.

use super::Report;
use super::human::{count_phrases, seconds, trimmed_lines};
use super::json::redacted_url;
use crate::engine::{CheckResult, Status};

/// Renders the report as GitHub-flavoured Markdown with a final newline.
pub fn render(report: &Report) -> String {
    let summary = report.summary();
    let counts: Vec<String> = count_phrases(&summary)
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    let t = &report.target;
    let mut out = String::from("## msa-doctor report\n\n");
    out.push_str(&format!(
        "**{}** in {}\n\n",
        counts.join(", "),
        seconds(report.duration)
    ));
    out.push_str(&format!(
        "Grafana `{}` · Prometheus `{}` · namespace `{}` · kube context `{}`\n\n",
        redacted_url(&t.grafana_url),
        redacted_url(&t.prometheus),
        t.namespace,
        t.kube_context.as_deref().unwrap_or("none"),
    ));
    if report.checks.is_empty() {
        out.push_str("No check ran.\n");
        return out;
    }
    out.push_str("| Status | Check | Title | Message |\n| --- | --- | --- | --- |\n");
    for r in &report.checks {
        let message = match r.status {
            Status::Skip => r.skipped_because.as_deref().unwrap_or(&r.message),
            _ => &r.message,
        };
        out.push_str(&format!(
            "| {} {} | `{}` | {} | {} |\n",
            emoji(r.status),
            r.status,
            r.id,
            cell(&r.title),
            cell(message)
        ));
    }
    let with_remedy: Vec<(&CheckResult, &str)> = report
        .checks
        .iter()
        .filter(|r| matches!(r.status, Status::Warn | Status::Fail | Status::Error))
        .filter_map(|r| r.remedy.as_deref().map(|m| (r, m)))
        .filter(|(_, m)| !m.trim().is_empty())
        .collect();
    if !with_remedy.is_empty() {
        out.push_str("\n### Remedies\n");
        for (r, remedy) in with_remedy {
            out.push_str(&format!(
                "\n#### {} `{}`: {}\n\n",
                emoji(r.status),
                r.id,
                cell(&r.title)
            ));
            out.push_str(&fenced(remedy));
        }
    }
    out
}

fn emoji(status: Status) -> &'static str {
    match status {
        Status::Pass => "✅",
        Status::Warn => "⚠️",
        Status::Fail => "❌",
        Status::Skip => "⏭️",
        Status::Error => "⁉️",
    }
}

/// Escapes text for one table cell: no pipe ends the cell, no newline ends the row, no `<`
/// opens an HTML tag.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().replace("\r\n", "\n").chars() {
        match c {
            '\n' | '\r' => out.push_str("<br>"),
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The remedy in a fenced block tagged `sh` or `yaml` when it looks like one.
fn fenced(remedy: &str) -> String {
    let lines = trimmed_lines(remedy);
    let longest_run = remedy.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run.max(2) + 1);
    let lang = if looks_like_commands(&lines) {
        "sh"
    } else if looks_like_yaml(&lines) {
        "yaml"
    } else {
        ""
    };
    format!("{fence}{lang}\n{}\n{fence}\n", lines.join("\n"))
}

/// The first line that is not blank or a comment.
fn first_significant<'a>(lines: &[&'a str]) -> Option<&'a str> {
    lines
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Whether the remedy starts with a shell command: a known program, `$ `, `./x` or `VAR=x cmd`.
fn looks_like_commands(lines: &[&str]) -> bool {
    const PROGRAMS: &[&str] = &[
        "kubectl",
        "helm",
        "curl",
        "wget",
        "docker",
        "podman",
        "kind",
        "minikube",
        "k3d",
        "export",
        "grafana-cli",
        "promtool",
        "msa-doctor",
        "sed",
        "echo",
        "cat",
        "git",
        "sudo",
        "chmod",
        "cd",
        "ls",
        "java",
        "gradle",
        "mvn",
        "jq",
        "aws",
        "gcloud",
        "az",
        "eksctl",
        "systemctl",
        "date",
        "timedatectl",
        "chronyc",
        "kcat",
        "kafkacat",
        "open",
        "xdg-open",
        "ssh",
        "sh",
        "bash",
    ];
    let Some(line) = first_significant(lines) else {
        return false;
    };
    if line.starts_with("$ ") {
        return true;
    }
    let mut words = line.split_whitespace().skip_while(|w| {
        w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    });
    let Some(word) = words.next() else {
        return false;
    };
    word.starts_with("./") || word.starts_with("kafka-") || PROGRAMS.contains(&word)
}

/// Whether the remedy starts like YAML: `key:` or `key: value` (a key without spaces), or `- item`.
fn looks_like_yaml(lines: &[&str]) -> bool {
    let Some(line) = first_significant(lines) else {
        return false;
    };
    if line.starts_with("- ") || line.starts_with("---") {
        return true;
    }
    line.split_once(':').is_some_and(|(key, rest)| {
        let key = key.trim_matches(|c| c == '"' || c == '\'');
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
            && (rest.is_empty() || rest.starts_with(' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc\r\nd <x>"), "a\\|b<br>c<br>d &lt;x&gt;");
    }

    #[test]
    fn languages() {
        let lang = |s: &str| {
            fenced(s)
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches('`')
                .to_string()
        };
        assert_eq!(
            lang("kubectl -n metacoding rollout restart deploy/order-service"),
            "sh"
        );
        assert_eq!(lang("# restart it\n$ kubectl get pods"), "sh");
        assert_eq!(lang("KUBECONFIG=~/.kube/config kubectl get ns"), "sh");
        assert_eq!(lang("spec:\n  template:\n    metadata: {}"), "yaml");
        assert_eq!(lang("- job_name: kafka"), "yaml");
        assert_eq!(
            lang("check that the plugin exists and is executable: chmod +x x"),
            ""
        );
        assert_eq!(lang("Log in once and change the admin password."), "");
    }

    #[test]
    fn fences_outlast_backticks_inside() {
        assert!(fenced("echo ```").starts_with("````sh\n"));
        assert!(fenced("echo hi").starts_with("```sh\n"));
    }
}
