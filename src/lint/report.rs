//! The formats of a lint report: human lines (`file:line: severity: message [rule]`, the fix
//! under it, wrapped to the terminal), `msa-doctor/lint/v1` JSON, SARIF 2.1.0 (one result per
//! finding, for GitHub code scanning), JUnit (one test case per checked workload) and
//! Markdown (for a pull-request comment or a job summary).

use super::rules::RULES;
use super::{Finding, LintReport, Severity};
use crate::report::styles::Styles;
use owo_colors::OwoColorize;
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde_json::json;

fn wrap_opts(width: usize, indent: &str) -> textwrap::Options<'_> {
    // Paths and rule ids stay whole: break at spaces only.
    textwrap::Options::new(width)
        .subsequent_indent(indent)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(false)
}

fn location(f: &Finding) -> String {
    if f.file.is_empty() {
        "(command line)".into()
    } else {
        format!("{}:{}", f.file, f.line)
    }
}

/// The human report, wrapped to `width` columns.
pub fn human(r: &LintReport, color: bool, width: usize) -> String {
    let styles = Styles::new(color);
    let width = width.max(40);
    let mut out = String::new();
    for f in &r.findings {
        let style = match f.severity {
            Severity::Error => styles.fail,
            Severity::Warning => styles.warn,
            Severity::Note => styles.dim,
        };
        let head = format!("{}: {}: ", location(f), f.severity.word());
        let text = format!("{head}{} [{}]", f.message, f.rule);
        let wrapped = textwrap::fill(&text, wrap_opts(width, "    "));
        // Colour the severity word only, after wrapping (escape codes have no width).
        let sev = format!(": {}:", f.severity.word());
        let colored = wrapped.replacen(&sev, &format!(": {}:", f.severity.word().style(style)), 1);
        out.push_str(&colored);
        out.push('\n');
        if let Some(fix) = &f.fix {
            let mut lines = fix.lines();
            if let Some(first) = lines.next() {
                out.push_str(&format!("    {} {first}\n", "fix:".style(styles.fix)));
            }
            for l in lines {
                out.push_str(&format!("         {l}\n"));
            }
        }
    }
    if !r.findings.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{}\n",
        format!(
            "workloads ({}, {} checked):",
            r.workloads.len(),
            r.checked()
        )
        .style(styles.header)
    ));
    for w in &r.workloads {
        let line = match &w.service {
            Some(s) => {
                let named = if *s == w.name {
                    s.clone()
                } else {
                    format!("{s} ({} {})", w.kind, w.name)
                };
                format!(
                    "  {named}: {}scraped by {} ({}:{})",
                    if w.spring_boot { "Spring Boot, " } else { "" },
                    w.scraped_by,
                    w.file,
                    w.line
                )
            }
            None => format!(
                "  {} {}: not checked, {} ({}:{})",
                w.kind,
                w.name,
                w.not_checked.as_deref().unwrap_or(""),
                w.file,
                w.line
            ),
        };
        out.push_str(&textwrap::fill(&line, wrap_opts(width, "      ")));
        out.push('\n');
    }
    if r.checked() == 0 {
        let text = format!(
            "msa-doctor lint: nothing was checked: no workload runs a Spring Boot application or is selected by a Service{}. Read: {}",
            if r.workloads.is_empty() {
                " (no workload at all)"
            } else {
                ""
            },
            if r.read.is_empty() {
                "nothing".into()
            } else {
                r.read.join("; ")
            }
        );
        let wrapped = textwrap::fill(&text, wrap_opts(width, "    "));
        out.push_str(&wrapped.replacen(
            "msa-doctor lint:",
            &"msa-doctor lint:".style(styles.fail).to_string(),
            1,
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "msa-doctor lint: {}, {}, {} checked: {}, {}, {}\n",
        plural(r.files, "file"),
        plural(r.workloads.len(), "workload"),
        r.checked(),
        plural(r.count(Severity::Error), "error"),
        plural(r.count(Severity::Warning), "warning"),
        plural(r.count(Severity::Note), "note")
    ));
    out
}

/// The JSON report, `msa-doctor/lint/v1` (keys in the contract's order).
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    tool: JsonTool,
    summary: JsonSummary,
    workloads: &'a [super::WorkloadInfo],
    findings: &'a [Finding],
}

#[derive(serde::Serialize)]
struct JsonTool {
    name: &'static str,
    version: &'static str,
}

#[derive(serde::Serialize)]
struct JsonSummary {
    files: usize,
    workloads: usize,
    checked: usize,
    error: usize,
    warning: usize,
    note: usize,
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `msa-doctor/lint/v1`.
pub fn json(r: &LintReport) -> String {
    let v = JsonReport {
        schema: "msa-doctor/lint/v1",
        tool: JsonTool {
            name: "msa-doctor",
            version: env!("CARGO_PKG_VERSION"),
        },
        summary: JsonSummary {
            files: r.files,
            workloads: r.workloads.len(),
            checked: r.checked(),
            error: r.count(Severity::Error),
            warning: r.count(Severity::Warning),
            note: r.count(Severity::Note),
        },
        workloads: &r.workloads,
        findings: &r.findings,
    };
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// SARIF 2.1.0: one run, every rule described, one result per finding.
pub fn sarif(r: &LintReport) -> String {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|(id, sev, text)| {
            json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": text},
                "help": {"text": format!("see docs/lint.md#{id}")},
                "defaultConfiguration": {"level": sev.word()},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            let mut text = f.message.clone();
            if let Some(fix) = &f.fix {
                text.push_str("\nfix:\n");
                text.push_str(fix);
            }
            let mut res = json!({
                "ruleId": f.rule,
                "level": f.severity.word(),
                "message": {"text": text},
            });
            if let Some(i) = RULES.iter().position(|(id, _, _)| *id == f.rule) {
                res["ruleIndex"] = json!(i);
            }
            if !f.file.is_empty() {
                res["locations"] = json!([{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.file)},
                        "region": {"startLine": f.line.max(1)},
                    }
                }]);
            }
            if let Some(w) = &f.workload {
                res["properties"] = json!({"workload": w});
            }
            res
        })
        .collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "msa-doctor",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// A relative file path as a URI reference (spaces and `%` escaped; `-` is standard input).
fn uri(file: &str) -> String {
    let mut s = String::new();
    for c in file.chars() {
        match c {
            '\\' => s.push('/'),
            ' ' => s.push_str("%20"),
            '%' => s.push_str("%25"),
            '#' => s.push_str("%23"),
            '?' => s.push_str("%3F"),
            c => s.push(c),
        }
    }
    s
}

/// JUnit: one test case per checked workload (failing on an error finding about it), and one
/// per file with findings about no workload.
pub fn junit(r: &LintReport) -> String {
    let mut report = quick_junit::Report::new("msa-doctor lint");
    let mut suite = TestSuite::new("lint");
    let text = |fs: &[&Finding]| -> String {
        fs.iter()
            .map(|f| {
                let mut t = format!(
                    "{}: {}: {} [{}]\n",
                    location(f),
                    f.severity.word(),
                    f.message,
                    f.rule
                );
                if let Some(fix) = &f.fix {
                    t.push_str(&format!("fix:\n{fix}\n"));
                }
                t
            })
            .collect()
    };
    let case = |name: String, class: &str, fs: Vec<&Finding>| {
        let errors: Vec<&Finding> = fs
            .iter()
            .copied()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        let status = if errors.is_empty() {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(errors[0].message.as_str())
                .set_type(errors[0].rule)
                .set_description(text(&errors));
            s
        };
        let mut c = TestCase::new(name, status);
        c.set_classname(class.to_string());
        if !fs.is_empty() {
            c.set_system_out(text(&fs));
        }
        c
    };
    for w in r.workloads.iter().filter(|w| w.service.is_some()) {
        let fs: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.workload.as_deref() == Some(w.name.as_str()))
            .collect();
        let name = match &w.service {
            Some(s) if *s != w.name => format!("{s} ({} {})", w.kind, w.name),
            _ => w.name.clone(),
        };
        suite.add_test_case(case(name, "workload", fs));
    }
    let names: Vec<&str> = r
        .workloads
        .iter()
        .filter(|w| w.service.is_some())
        .map(|w| w.name.as_str())
        .collect();
    let mut files: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.workload.as_deref().is_none_or(|w| !names.contains(&w)))
        .map(|f| f.file.as_str())
        .collect();
    files.dedup();
    for file in files {
        let fs: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.file == file && f.workload.as_deref().is_none_or(|w| !names.contains(&w)))
            .collect();
        let name = if file.is_empty() {
            "(command line)".to_string()
        } else {
            file.to_string()
        };
        suite.add_test_case(case(name, "file", fs));
    }
    if r.checked() == 0 {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
        s.set_message("nothing was checked: no workload runs a Spring Boot application or is selected by a Service");
        suite.add_test_case(TestCase::new("services found", s));
    }
    report.add_test_suite(suite);
    report.to_string().unwrap_or_else(|e| {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- msa-doctor: cannot write JUnit: {e} -->\n")
    })
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown: a summary, a table of findings, then each fix.
pub fn markdown(r: &LintReport) -> String {
    let mut out = String::from("## msa-doctor lint\n\n");
    out.push_str(&format!(
        "**{}, {}, {}** in {}; {}, {} checked.\n\n",
        plural(r.count(Severity::Error), "error"),
        plural(r.count(Severity::Warning), "warning"),
        plural(r.count(Severity::Note), "note"),
        plural(r.files, "file"),
        plural(r.workloads.len(), "workload"),
        r.checked()
    ));
    if r.checked() == 0 {
        out.push_str("Nothing was checked: no workload runs a Spring Boot application or is selected by a Service.\n\n");
    }
    if !r.workloads.is_empty() {
        out.push_str(
            "| workload | kind | service | scraped by | where |\n| --- | --- | --- | --- | --- |\n",
        );
        for w in &r.workloads {
            out.push_str(&format!(
                "| {} | {} | {} | {} | `{}:{}` |\n",
                md_cell(&w.name),
                w.kind,
                w.service.as_deref().map(md_cell).unwrap_or_else(|| format!(
                    "not checked: {}",
                    md_cell(w.not_checked.as_deref().unwrap_or(""))
                )),
                w.scraped_by,
                md_cell(&w.file),
                w.line
            ));
        }
        out.push('\n');
    }
    if !r.findings.is_empty() {
        out.push_str(
            "| severity | rule | where | workload | message |\n| --- | --- | --- | --- | --- |\n",
        );
        for f in &r.findings {
            out.push_str(&format!(
                "| {} | [`{}`](docs/lint.md#{}) | `{}` | {} | {} |\n",
                f.severity.word(),
                f.rule,
                f.rule,
                md_cell(&location(f)),
                f.workload.as_deref().map(md_cell).unwrap_or_default(),
                md_cell(&f.message)
            ));
        }
        let fixes: Vec<&Finding> = r.findings.iter().filter(|f| f.fix.is_some()).collect();
        if !fixes.is_empty() {
            out.push_str("\n### Fixes\n");
            for f in fixes {
                out.push_str(&format!(
                    "\n`{}` ({}):\n\n```\n{}\n```\n",
                    location(f),
                    f.rule,
                    f.fix.as_deref().unwrap_or("")
                ));
            }
        }
    }
    out
}
