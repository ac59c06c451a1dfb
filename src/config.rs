//! Check definitions as data: `checks/*.toml` compiled in as the built-in checklist, plus
//! `--checks DIR` and the config file's folders. `RawCheck` mirrors the TOML; everything is
//! validated (unique ids, known kind, valid args, needs exist, no cycle, durations) into a
//! [`Plan`] before anything runs. Errors name the file, the line and the field.

use crate::engine::{CheckSpec, Origin, Severity};
use crate::probes;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration or usage error: exit code 2, with the file, line and field when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file was read but is invalid.
    #[error("{}:{line}: {field}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field (or `toml` for a syntax error).
        field: String,
        /// Why.
        message: String,
    },
    /// A bad flag value.
    #[error("{0}")]
    Usage(String),
}

impl ConfigError {
    /// From a TOML parse or deserialisation error, with the line of its span.
    pub fn at(path: &Path, text: &str, e: &toml::de::Error) -> Self {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        let message = e.message().trim().to_string();
        let field = if message.starts_with("unknown field") {
            message
                .split('`')
                .nth(1)
                .unwrap_or("unknown field")
                .to_string()
        } else if message.contains("missing field") {
            message.split('`').nth(1).unwrap_or("check").to_string()
        } else {
            // A wrong type or value: name the key written on that line, if there is one.
            key_on_line(text, line).unwrap_or_else(|| "toml".to_string())
        };
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            field,
            message,
        }
    }
}

/// The key of a `key = value` line (1-based), when the line is one.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim();
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    ok.then(|| key.to_string())
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The config file's name, which a check folder may also hold (and which is not a check file).
pub const CONFIG_FILE_NAME: &str = "msa-doctor.toml";

/// The built-in checklist, compiled into the binary.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("access.toml", include_str!("../checks/access.toml")),
    ("grafana.toml", include_str!("../checks/grafana.toml")),
    ("k8s.toml", include_str!("../checks/k8s.toml")),
    ("prometheus.toml", include_str!("../checks/prometheus.toml")),
    ("data.toml", include_str!("../checks/data.toml")),
    ("kafka.toml", include_str!("../checks/kafka.toml")),
    ("panel.toml", include_str!("../checks/panel.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    check: Vec<Spanned<RawCheck>>,
}

/// One `[[check]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    id: Spanned<String>,
    category: Option<Spanned<String>>,
    title: Spanned<String>,
    kind: Spanned<String>,
    needs: Option<Spanned<Vec<String>>>,
    needs_via_grafana: Option<Spanned<Vec<String>>>,
    severity: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    retry: Option<bool>,
    remedy: Option<String>,
    docs: Option<String>,
    args: Option<Spanned<toml::Table>>,
}

/// A check file's text, where it came from, and its checks once parsed.
struct Source {
    origin: Origin,
    path: PathBuf,
    text: String,
}

struct Parsed {
    spec: CheckSpec,
    source: usize,
    id_line: usize,
    needs_line: usize,
}

/// The validated checklist, in dependency order (a check after everything it needs).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The checks, each after its prerequisites.
    pub checks: Vec<CheckSpec>,
}

fn invalid(src: &Source, line: usize, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: src.path.clone(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// `<category>.<kebab-name>`: two kebab-case words (lowercase letters, digits, single dashes
/// inside) joined by one dot.
fn is_valid_id(id: &str) -> bool {
    let Some((cat, name)) = id.split_once('.') else {
        return false;
    };
    let kebab = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--")
    };
    kebab(cat) && kebab(name)
}

fn parse_source(src: &Source, index: usize) -> Result<Vec<Parsed>, ConfigError> {
    let raw: RawFile =
        toml::from_str(&src.text).map_err(|e| ConfigError::at(&src.path, &src.text, &e))?;
    let mut out = Vec::new();
    for table in raw.check {
        let table_line = line_of(&src.text, table.span().start);
        let c = table.into_inner();
        let line = |s: std::ops::Range<usize>| line_of(&src.text, s.start);
        let id = c.id.get_ref().clone();
        let id_line = line(c.id.span());
        if !is_valid_id(&id) {
            return Err(invalid(
                src,
                id_line,
                "id",
                format!(
                    "{id:?} is not <category>.<kebab-name> (lowercase letters, digits and '-', one dot)"
                ),
            ));
        }
        let category = match &c.category {
            Some(cat) => {
                let expected = id.split('.').next().unwrap_or_default();
                if cat.get_ref() != expected {
                    return Err(invalid(
                        src,
                        line(cat.span()),
                        "category",
                        format!(
                            "{:?} is not the prefix of the id {id:?} (expected {expected:?})",
                            cat.get_ref()
                        ),
                    ));
                }
                cat.get_ref().clone()
            }
            None => id.split('.').next().unwrap_or_default().to_string(),
        };
        if c.title.get_ref().trim().is_empty() {
            return Err(invalid(
                src,
                line(c.title.span()),
                "title",
                "must not be empty",
            ));
        }
        let severity = match c.severity.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("fail") => Severity::Fail,
            Some("warn") => Severity::Warn,
            Some(other) => {
                return Err(invalid(
                    src,
                    line(c.severity.as_ref().map(|s| s.span()).unwrap_or(0..0)),
                    "severity",
                    format!("{other:?} is not \"fail\" or \"warn\""),
                ));
            }
        };
        let timeout = match &c.timeout {
            None => None,
            Some(t) => Some(
                crate::settings::parse_duration(t.get_ref())
                    .map_err(|m| invalid(src, line(t.span()), "timeout", m))?,
            ),
        };
        let kind = c.kind.get_ref().clone();
        let args_line = c
            .args
            .as_ref()
            .map(|a| line(a.span()))
            .unwrap_or(table_line);
        let args = c.args.map(|a| a.into_inner()).unwrap_or_default();
        let base = match &src.origin {
            Origin::File(p) => p.parent(),
            Origin::BuiltIn(_) => None,
        };
        let probe = probes::build(&kind, &args, base).map_err(|e| match e {
            probes::BuildError::UnknownKind => invalid(
                src,
                line(c.kind.span()),
                "kind",
                format!(
                    "unknown kind {kind:?}; known kinds: {}",
                    probes::KINDS.join(", ")
                ),
            ),
            probes::BuildError::Args(m) => invalid(src, args_line, "args", m),
        })?;
        out.push(Parsed {
            spec: CheckSpec {
                id,
                category,
                title: c.title.into_inner(),
                kind,
                needs: c
                    .needs
                    .as_ref()
                    .map(|n| n.get_ref().clone())
                    .unwrap_or_default(),
                needs_via_grafana: c
                    .needs_via_grafana
                    .as_ref()
                    .map(|n| n.get_ref().clone())
                    .unwrap_or_default(),
                severity,
                timeout,
                retry: c.retry.unwrap_or(true),
                remedy: c.remedy,
                docs: c.docs,
                origin: src.origin.clone(),
                probe,
            },
            source: index,
            id_line,
            needs_line: c
                .needs
                .as_ref()
                .map(|n| line(n.span()))
                .unwrap_or(table_line),
        });
    }
    Ok(out)
}

/// Loads the built-in checklist and every `*.toml` in `dirs` (a file's id that equals a
/// built-in id replaces it), then validates the whole.
/// A path that is a file is read as one check file. In a folder, `msa-doctor.toml` is the
/// config file that may sit next to the checks it names, not a check file: it is left out.
pub fn load(dirs: &[PathBuf]) -> Result<Plan, ConfigError> {
    let mut sources = built_in_sources(BUILT_IN);
    for dir in dirs {
        let files: Vec<PathBuf> = if dir.is_file() {
            vec![dir.clone()]
        } else {
            let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::Read {
                path: dir.clone(),
                message: format!("cannot read the check folder: {e}"),
            })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| ConfigError::Read {
                    path: dir.clone(),
                    message: format!("cannot list the check folder: {e}"),
                })?;
                let p = entry.path();
                if p.extension().is_some_and(|x| x == "toml")
                    && p.file_name().is_some_and(|n| n != CONFIG_FILE_NAME)
                {
                    check_file_kind(&p)?;
                    files.push(p);
                }
            }
            files.sort();
            files
        };
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
                path: path.clone(),
                message: format!("cannot read the check file: {e}"),
            })?;
            sources.push(Source {
                origin: Origin::File(path.clone()),
                path,
                text,
            });
        }
    }
    validate(&sources)
}

/// A `*.toml` in a check folder must be a readable file: a dangling symbolic link or a folder
/// of that name is a usage error naming it, never skipped (it was meant to be a check file).
/// Read permission is checked by reading it.
fn check_file_kind(p: &Path) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Read {
        path: p.to_path_buf(),
        message,
    };
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.is_dir() => Err(err(
            "a folder named like a check file: check files are `*.toml` files".into(),
        )),
        Ok(_) => Err(err(
            "not a regular file: check files are `*.toml` files".into()
        )),
        Err(e) => match std::fs::read_link(p) {
            Ok(target) => Err(err(format!(
                "a symbolic link to {}, which cannot be read: {e}",
                target.display()
            ))),
            Err(_) => Err(err(format!("cannot read the check file: {e}"))),
        },
    }
}

/// Validates in-memory sources (used by [`load`] and by tests).
fn validate(sources: &[Source]) -> Result<Plan, ConfigError> {
    let mut parsed: Vec<Parsed> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        parsed.extend(parse_source(s, i)?);
    }
    // Unique ids within the user's files and within the built-ins; a user file replaces a
    // built-in of the same id.
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut keep: Vec<Option<Parsed>> = Vec::new();
    for p in parsed {
        if let Some(&j) = by_id.get(&p.spec.id) {
            let prev = keep[j].as_ref().expect("kept");
            let prev_builtin = matches!(prev.spec.origin, Origin::BuiltIn(_));
            let this_builtin = matches!(p.spec.origin, Origin::BuiltIn(_));
            if prev_builtin && !this_builtin {
                keep[j] = Some(p);
                continue;
            }
            let src = &sources[p.source];
            return Err(invalid(
                src,
                p.id_line,
                "id",
                format!(
                    "duplicate id {:?} (first defined in {}:{})",
                    p.spec.id,
                    sources[prev.source].path.display(),
                    prev.id_line
                ),
            ));
        }
        by_id.insert(p.spec.id.clone(), keep.len());
        keep.push(Some(p));
    }
    let parsed: Vec<Parsed> = keep.into_iter().flatten().collect();
    let ids: HashSet<&str> = parsed.iter().map(|p| p.spec.id.as_str()).collect();
    for p in &parsed {
        for n in p.spec.needs.iter().chain(&p.spec.needs_via_grafana) {
            if !ids.contains(n.as_str()) {
                return Err(invalid(
                    &sources[p.source],
                    p.needs_line,
                    "needs",
                    format!("{:?} needs {n:?}, which no check defines", p.spec.id),
                ));
            }
            if n == &p.spec.id {
                return Err(invalid(
                    &sources[p.source],
                    p.needs_line,
                    "needs",
                    format!("{:?} needs itself", p.spec.id),
                ));
            }
        }
    }
    // Topological order, stable: a check keeps its place unless a need comes later.
    let index: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .map(|(i, p)| (p.spec.id.as_str(), i))
        .collect();
    let mut state = vec![0u8; parsed.len()]; // 0 new, 1 on the stack, 2 done
    let mut order: Vec<usize> = Vec::with_capacity(parsed.len());
    fn visit(
        i: usize,
        parsed: &[Parsed],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&x| x == i).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for n in parsed[i]
            .spec
            .needs
            .iter()
            .chain(&parsed[i].spec.needs_via_grafana)
        {
            visit(index[n.as_str()], parsed, index, state, order, path)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..parsed.len() {
        let mut path = Vec::new();
        if let Err(cycle) = visit(i, &parsed, &index, &mut state, &mut order, &mut path) {
            let first = &parsed[cycle[0]];
            let names: Vec<&str> = cycle.iter().map(|&j| parsed[j].spec.id.as_str()).collect();
            return Err(invalid(
                &sources[first.source],
                first.needs_line,
                "needs",
                format!("dependency cycle: {}", names.join(" -> ")),
            ));
        }
    }
    let mut parsed: Vec<Option<Parsed>> = parsed.into_iter().map(Some).collect();
    let checks = order
        .into_iter()
        .filter_map(|i| parsed[i].take().map(|p| p.spec))
        .collect();
    Ok(Plan { checks })
}

impl Plan {
    /// Folds `needs_via_grafana` into `needs` when Prometheus is reached through Grafana
    /// (`prometheus_url` is `None`), and drops them otherwise.
    pub fn for_settings(mut self, prometheus_url: Option<&str>) -> Plan {
        for c in &mut self.checks {
            let extra = std::mem::take(&mut c.needs_via_grafana);
            if prometheus_url.is_none() {
                for n in extra {
                    if !c.needs.contains(&n) {
                        c.needs.push(n);
                    }
                }
            }
        }
        self
    }
}

fn built_in_sources(built_in: &[(&'static str, &str)]) -> Vec<Source> {
    built_in
        .iter()
        .map(|(name, text)| Source {
            origin: Origin::BuiltIn(name),
            path: PathBuf::from("checks").join(name),
            text: text.to_string(),
        })
        .collect()
}

/// Validates check files given as text (name, content), as if they were in a `--checks` folder.
pub fn load_texts(files: &[(&str, &str)]) -> Result<Plan, ConfigError> {
    load_texts_over(BUILT_IN, files)
}

/// Like [`load_texts`], over another built-in checklist (file name, content) than the crate's.
pub fn load_texts_over(
    built_in: &[(&'static str, &str)],
    files: &[(&str, &str)],
) -> Result<Plan, ConfigError> {
    let mut sources = built_in_sources(built_in);
    for (name, text) in files {
        sources.push(Source {
            origin: Origin::File(PathBuf::from(name)),
            path: PathBuf::from(name),
            text: text.to_string(),
        });
    }
    validate(&sources)
}
