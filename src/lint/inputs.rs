//! What `lint` reads: files and folders (recursive, `.gitignore` honoured, symlink loops
//! skipped), `-` for standard input, multi-document YAML, `kind: List`, JSON manifests, Helm
//! charts (rendered with `helm template` when `helm` is on PATH) and Kustomize trees (rendered
//! with `kubectl kustomize` when kubectl is on PATH; else patches are known as patches).
//!
//! It runs no rule: it yields documents that remember where each node came from, the files of
//! the applications (build files, Spring configuration) for [`super::app`], and the findings
//! of reading itself (syntax errors, duplicate keys, charts that could not be rendered).

use super::yaml::{self, Node, Value};
use super::{Finding, Severity};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One step of a path into a manifest.
#[derive(Clone, Copy, Debug)]
pub enum Seg<'a> {
    /// A mapping key.
    K(&'a str),
    /// The item of a list whose `name` is this (containers, ports), as strategic merge matches.
    N(&'a str),
    /// The item of a list at this index.
    I(usize),
}

/// Where a rendered document's values were written.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// What rendered it, e.g. `kubectl kustomize k8s/overlays/prod`.
    pub by: String,
    /// Source documents that may hold a value, most specific first (patches, then the base).
    pub sources: Vec<(String, Node)>,
    /// A Helm template file (not YAML) and its text, searched for keys.
    pub template: Option<(String, String)>,
}

/// One Kubernetes object (or Prometheus configuration) to lint.
#[derive(Clone, Debug)]
pub struct Doc {
    /// The file it was read from, relative as given (`-` for standard input).
    pub file: String,
    /// The document.
    pub node: Node,
    /// Set when the document was rendered by Helm or Kustomize.
    pub rendered: Option<Origins>,
}

impl Doc {
    /// The file and line where the value at `path` is written; when it is not written, where
    /// it should be (the deepest part of the path that exists).
    pub fn locate(&self, path: &[Seg]) -> (String, u32) {
        if let Some(o) = &self.rendered {
            for (file, node) in &o.sources {
                let (line, full) = walk(node, path);
                if full {
                    return (file.clone(), line);
                }
            }
            if let Some((file, text)) = &o.template {
                return (file.clone(), template_line(text, path));
            }
            if let Some((file, node)) = o.sources.last() {
                return (file.clone(), walk(node, path).0);
            }
        }
        (self.file.clone(), walk(&self.node, path).0)
    }

    /// Where the object itself is written: for a rendered object, its base resource (or
    /// template); else its document in the file.
    pub fn home(&self) -> (String, u32) {
        if let Some(o) = &self.rendered {
            if let Some((file, node)) = o.sources.last() {
                return (file.clone(), node.line);
            }
            if let Some((file, _)) = &o.template {
                return (file.clone(), 1);
            }
        }
        (self.file.clone(), self.node.line)
    }

    /// The node at a path, in the (rendered) document.
    pub fn at(&self, path: &[Seg]) -> Option<&Node> {
        let mut n = &self.node;
        for s in path {
            n = step(n, *s)?.1;
        }
        Some(n)
    }
}

fn step<'n>(n: &'n Node, s: Seg) -> Option<(u32, &'n Node)> {
    match s {
        Seg::K(k) => n.entry(k).map(|e| (e.line, &e.node)),
        Seg::N(name) => n
            .items()
            .iter()
            .find(|i| i.str_at(&["name"]) == Some(name))
            .map(|i| (i.line, i)),
        Seg::I(i) => n.items().get(i).map(|x| (x.line, x)),
    }
}

/// The line of the deepest node on the path, and whether the whole path exists.
fn walk(node: &Node, path: &[Seg]) -> (u32, bool) {
    let mut n = node;
    let mut line = node.line;
    for s in path {
        match step(n, *s) {
            Some((l, next)) => {
                line = l;
                n = next;
            }
            None => return (line, false),
        }
    }
    (line, true)
}

/// In a Helm template, the first line that writes the deepest key of the path.
fn template_line(text: &str, path: &[Seg]) -> u32 {
    for s in path.iter().rev() {
        let key = match s {
            Seg::K(k) => format!("{k}:"),
            Seg::N(n) => format!("name: {n}"),
            Seg::I(_) => continue,
        };
        if let Some(i) = text.lines().position(|l| l.contains(&key)) {
            return i as u32 + 1;
        }
    }
    1
}

/// Everything read.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Files read (manifests and application files).
    pub files: usize,
    /// The objects to lint.
    pub docs: Vec<Doc>,
    /// Findings of reading: syntax errors, duplicate keys, charts not rendered.
    pub findings: Vec<Finding>,
    /// Build files, Spring configuration, Dockerfiles and Java/Kotlin sources, for `app`.
    pub app_files: Vec<PathBuf>,
    /// One line per input of what was read, for the "nothing checked" message.
    pub read: Vec<String>,
}

/// Which program renders what, and whether it may be run.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `helm`, when on PATH.
    pub helm: Option<PathBuf>,
    /// `kubectl`, when on PATH.
    pub kubectl: Option<PathBuf>,
    /// `--values` files for `helm template`.
    pub helm_values: Vec<PathBuf>,
}

impl Tools {
    /// Finds helm and kubectl on PATH.
    pub fn from_path(helm_values: Vec<PathBuf>) -> Self {
        Tools {
            helm: which("helm"),
            kubectl: which("kubectl"),
            helm_values,
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_app_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(
        name,
        "build.gradle" | "build.gradle.kts" | "settings.gradle" | "settings.gradle.kts" | "pom.xml"
    ) || name.ends_with(".versions.toml")
        || name.starts_with("Dockerfile")
        || ((name.starts_with("application") || name.starts_with("bootstrap"))
            && matches!(ext, "yml" | "yaml" | "properties"))
        || (matches!(ext, "java" | "kt") && p.components().any(|c| c.as_os_str() == "main"))
}

fn is_manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Display form of a path: as the user gave it, without a leading `./`.
fn show(p: &Path) -> String {
    let s = p.to_string_lossy().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

/// Reads the inputs. `stdin` is the text of standard input when `-` was given.
pub fn read(paths: &[PathBuf], stdin: Option<String>, tools: &Tools) -> Inputs {
    let mut inp = Inputs::default();
    let mut manifest_files: Vec<PathBuf> = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            continue;
        }
        if p.is_file() {
            inp.read.push(show(p));
            if is_app_file(p) {
                inp.app_files.push(p.clone());
            } else {
                manifest_files.push(p.clone());
            }
            continue;
        }
        let before = (manifest_files.len(), inp.app_files.len());
        let mut walker = ignore::WalkBuilder::new(p);
        walker
            .follow_links(true)
            .require_git(false)
            .sort_by_file_name(|a, b| a.cmp(b))
            .filter_entry(|e| {
                !matches!(
                    e.file_name().to_str(),
                    Some("node_modules" | "target" | ".git")
                )
            });
        for entry in walker.build() {
            // A symlink loop or an unreadable folder is skipped; what is readable is read.
            let Ok(e) = entry else { continue };
            if !e.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = e.into_path();
            if is_app_file(&path) {
                inp.app_files.push(path);
            } else if is_manifest_file(&path) {
                manifest_files.push(path);
            }
        }
        inp.read.push(format!(
            "{} ({} manifest files, {} application files)",
            show(p),
            manifest_files.len() - before.0,
            inp.app_files.len() - before.1
        ));
    }
    inp.files = manifest_files.len() + inp.app_files.len();

    // Helm charts: their folders hold templates, not YAML.
    let charts: Vec<PathBuf> = manifest_files
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == "Chart.yaml" || n == "Chart.yml")
        })
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let in_chart = |p: &Path| charts.iter().any(|c| p.starts_with(c));

    // Parse every manifest file once.
    let mut parsed: BTreeMap<PathBuf, Vec<Node>> = BTreeMap::new();
    for f in &manifest_files {
        if in_chart(f) {
            continue;
        }
        let text = match std::fs::read(f) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                inp.findings.push(Finding::file(
                    "file-unreadable",
                    Severity::Error,
                    &show(f),
                    1,
                    format!("cannot read the file: {e}"),
                ));
                continue;
            }
        };
        let json = f.extension().is_some_and(|e| e == "json");
        if json && !(text.contains("\"apiVersion\"") && text.contains("\"kind\"")) {
            continue;
        }
        let docs = parse_text(&show(f), &text, &mut inp.findings);
        parsed.insert(f.clone(), docs);
    }

    // Kustomize: which files are patches, and which trees to render.
    let kdirs: Vec<PathBuf> = manifest_files
        .iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n == "kustomization.yaml" || n == "kustomization.yml" || n == "Kustomization"
            })
        })
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let mut kust: HashMap<PathBuf, Kustomization> = HashMap::new();
    for d in &kdirs {
        let file = manifest_files
            .iter()
            .find(|p| p.parent() == Some(d.as_path()) && kust_name(p))
            .cloned()
            .unwrap_or_default();
        let k = parsed
            .get(&file)
            .and_then(|docs| docs.first())
            .map(|n| Kustomization::of(d, &file, n))
            .unwrap_or_else(|| Kustomization {
                file: file.clone(),
                ..Default::default()
            });
        kust.insert(d.clone(), k);
    }
    let mut patch_files: BTreeSet<PathBuf> = BTreeSet::new();
    for k in kust.values() {
        patch_files.extend(k.patches.iter().cloned());
    }
    let referenced: BTreeSet<PathBuf> =
        kust.values().flat_map(|k| k.dirs.iter().cloned()).collect();
    let mut roots: Vec<&PathBuf> = kdirs.iter().filter(|d| !referenced.contains(*d)).collect();
    roots.sort();
    let mut consumed: BTreeSet<PathBuf> = BTreeSet::new();
    for root in roots {
        let closure = closure_of(root, &kust);
        let kfile = show(&kust[root].file);
        let mut rendered = None;
        if let Some(kubectl) = &tools.kubectl {
            match run(Command::new(kubectl).arg("kustomize").arg(root)) {
                Ok(text) => rendered = Some(text),
                Err(why) => inp.findings.push(Finding::file(
                    "kustomize-render-failed",
                    Severity::Warning,
                    &kfile,
                    1,
                    format!(
                        "`kubectl kustomize {}` failed ({why}); its files were checked one by one",
                        show(root)
                    ),
                )),
            }
        } else {
            inp.findings.push(Finding {
                fix: Some(format!("kubectl kustomize {} | msa-doctor lint -", show(root))),
                ..Finding::file(
                    "kustomize-not-rendered",
                    Severity::Note,
                    &kfile,
                    1,
                    format!(
                        "a Kustomize tree; kubectl is not on PATH, so it was not rendered: its resources were checked one by one and its patches ({}) were not read as workloads",
                        closure.iter().map(|d| kust[d].patches.len()).sum::<usize>()
                    ),
                )
            });
        }
        let Some(text) = rendered else { continue };
        let by = format!("kubectl kustomize {}", show(root));
        let mut res_docs: Vec<(String, Node)> = Vec::new();
        let mut patch_docs: Vec<(String, Node)> = Vec::new();
        for d in &closure {
            let k = &kust[d];
            for f in &k.resources {
                consumed.insert(f.clone());
                for n in parsed.get(f).into_iter().flatten() {
                    res_docs.push((show(f), n.clone()));
                }
            }
            for f in &k.patches {
                for n in parsed.get(f).into_iter().flatten() {
                    patch_docs.push((show(f), n.clone()));
                }
            }
        }
        let s = yaml::parse(&text);
        for node in expand_lists(s.docs) {
            let (kind, name) = kind_name(&node);
            let mut sources: Vec<(String, Node)> = patch_docs
                .iter()
                .filter(|(_, p)| same_object(p, &kind, &name))
                .cloned()
                .collect();
            sources.extend(
                res_docs
                    .iter()
                    .filter(|(_, r)| same_object(r, &kind, &name))
                    .cloned(),
            );
            inp.docs.push(Doc {
                file: kfile.clone(),
                node,
                rendered: Some(Origins {
                    by: by.clone(),
                    sources,
                    template: None,
                }),
            });
        }
    }

    // Plain files.
    for (f, docs) in parsed {
        if consumed.contains(&f) || patch_files.contains(&f) || kust_name(&f) {
            continue;
        }
        for node in expand_lists(docs) {
            inp.docs.push(Doc {
                file: show(&f),
                node,
                rendered: None,
            });
        }
    }

    // Standard input.
    if let Some(text) = stdin {
        inp.files += 1;
        inp.read.push("- (standard input)".into());
        let docs = parse_text("-", &text, &mut inp.findings);
        for node in expand_lists(docs) {
            inp.docs.push(Doc {
                file: "-".into(),
                node,
                rendered: None,
            });
        }
    }

    // Helm charts.
    for c in &charts {
        let chart_file = show(&c.join("Chart.yaml"));
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "release".into());
        let Some(helm) = &tools.helm else {
            inp.findings.push(Finding {
                fix: Some(format!(
                    "helm template {name} {} | msa-doctor lint -",
                    show(c)
                )),
                ..Finding::file(
                    "helm-chart-not-rendered",
                    Severity::Warning,
                    &chart_file,
                    1,
                    "a Helm chart; `helm` is not on PATH, so its templates were not checked".into(),
                )
            });
            continue;
        };
        let mut cmd = Command::new(helm);
        cmd.arg("template").arg(&name).arg(c);
        for v in &tools.helm_values {
            cmd.arg("--values").arg(v);
        }
        let text = match run(&mut cmd) {
            Ok(t) => t,
            Err(why) => {
                inp.findings.push(Finding::file(
                    "helm-render-failed",
                    Severity::Error,
                    &chart_file,
                    1,
                    format!("`helm template {name} {}` failed: {why}", show(c)),
                ));
                continue;
            }
        };
        let by = format!("helm template {name} {}", show(c));
        for (source, chunk) in helm_chunks(&text) {
            // "# Source: <chart>/templates/x.yaml": the chart's own folder name comes first.
            let template = source.and_then(|s| {
                let rel = s.split_once('/').map(|(_, r)| r).unwrap_or(&s).to_string();
                let p = c.join(&rel);
                std::fs::read_to_string(&p).ok().map(|t| (show(&p), t))
            });
            let s = yaml::parse(&chunk);
            if let Some(e) = s.error {
                inp.findings.push(Finding::file(
                    "yaml-syntax",
                    Severity::Error,
                    template
                        .as_ref()
                        .map(|t| t.0.as_str())
                        .unwrap_or(&chart_file),
                    1,
                    format!("the chart renders invalid YAML: {}", e.message),
                ));
            }
            for node in expand_lists(s.docs) {
                inp.docs.push(Doc {
                    file: template
                        .as_ref()
                        .map(|t| t.0.clone())
                        .unwrap_or_else(|| chart_file.clone()),
                    node,
                    rendered: Some(Origins {
                        by: by.clone(),
                        sources: vec![],
                        template: template.clone(),
                    }),
                });
            }
        }
    }
    inp
}

fn kust_name(p: &Path) -> bool {
    p.file_name().is_some_and(|n| {
        n == "kustomization.yaml" || n == "kustomization.yml" || n == "Kustomization"
    })
}

/// Runs a renderer; its stdout, or the first line of its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            Err(err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .chars()
                .take(300)
                .collect())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Helm's output split per document, each with its `# Source:` template.
fn helm_chunks(text: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut src = None;
    for l in text.lines() {
        if l.starts_with("---") {
            if !cur.trim().is_empty() {
                out.push((src.take(), std::mem::take(&mut cur)));
            }
            cur.clear();
            src = None;
            continue;
        }
        if let Some(s) = l.strip_prefix("# Source: ") {
            src = Some(s.trim().to_string());
        }
        cur.push_str(l);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push((src, cur));
    }
    out
}

/// Parses a text; syntax errors and duplicate keys (in Kubernetes objects) become findings.
fn parse_text(file: &str, text: &str, findings: &mut Vec<Finding>) -> Vec<Node> {
    let s = yaml::parse(text);
    if let Some(e) = &s.error {
        findings.push(Finding::file(
            "yaml-syntax",
            Severity::Error,
            file,
            e.line,
            format!(
                "not valid YAML: {}; the rest of this file was not read",
                e.message
            ),
        ));
    }
    for (idx, d) in &s.duplicates {
        let Some(doc) = s.docs.get(*idx) else {
            continue;
        };
        if doc.get("kind").is_none() && doc.get("scrape_configs").is_none() {
            continue;
        }
        findings.push(Finding {
            fix: Some(format!(
                "keep one `{}` (line {} or {}) and delete the other",
                d.key, d.first, d.second
            )),
            workload: doc.str_at(&["metadata", "name"]).map(str::to_string),
            ..Finding::file(
                "duplicate-key",
                Severity::Warning,
                file,
                d.second,
                format!(
                    "key `{}` appears twice, lines {} and {}; the second one wins",
                    d.key, d.first, d.second
                ),
            )
        });
    }
    s.docs
}

/// `kind: List` items, flattened; documents that are not mappings dropped.
fn expand_lists(docs: Vec<Node>) -> Vec<Node> {
    let mut out = Vec::new();
    for d in docs {
        if !d.is_map() {
            continue;
        }
        let kind = d.str_at(&["kind"]).unwrap_or("");
        if kind == "List" || (kind.ends_with("List") && d.get("items").is_some()) {
            if let Some(Value::Seq(items)) = d.get("items").map(|n| &n.value) {
                out.extend(items.iter().filter(|i| i.is_map()).cloned());
            }
        } else {
            out.push(d);
        }
    }
    out
}

fn kind_name(n: &Node) -> (String, String) {
    (
        n.str_at(&["kind"]).unwrap_or("").to_string(),
        n.str_at(&["metadata", "name"]).unwrap_or("").to_string(),
    )
}

/// A source document that a rendered object was made from: same kind, and a name that the
/// rendered one contains (Kustomize adds prefixes and suffixes).
fn same_object(src: &Node, kind: &str, name: &str) -> bool {
    let (k, n) = kind_name(src);
    (k.is_empty() || k == kind) && !n.is_empty() && name.contains(&n)
}

/// A kustomization.yaml: its resources, patches, and the folders it builds on.
#[derive(Debug, Default)]
struct Kustomization {
    file: PathBuf,
    resources: Vec<PathBuf>,
    patches: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Kustomization {
    fn of(dir: &Path, file: &Path, n: &Node) -> Self {
        let mut k = Kustomization {
            file: file.to_path_buf(),
            ..Default::default()
        };
        let norm = |s: &str| normalize(&dir.join(s));
        for key in ["resources", "bases", "components"] {
            for i in n.get(key).map(Node::items).unwrap_or(&[]) {
                if let Some(s) = i.text() {
                    let p = norm(s);
                    if p.is_dir() {
                        k.dirs.push(p);
                    } else {
                        k.resources.push(p);
                    }
                }
            }
        }
        for key in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
            for i in n.get(key).map(Node::items).unwrap_or(&[]) {
                let s = i.text().or_else(|| i.str_at(&["path"]));
                if let Some(s) = s
                    && !s.contains('\n')
                {
                    k.patches.push(norm(s));
                }
            }
        }
        k
    }
}

/// `a/b/../c` as `a/c`, without touching the file system (symlinks are not resolved).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn closure_of(root: &Path, kust: &HashMap<PathBuf, Kustomization>) -> Vec<PathBuf> {
    let mut seen = vec![root.to_path_buf()];
    let mut i = 0;
    while i < seen.len() {
        if let Some(k) = kust.get(&seen[i]) {
            for d in &k.dirs {
                if kust.contains_key(d) && !seen.contains(d) {
                    seen.push(d.clone());
                }
            }
        }
        i += 1;
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_falls_back_to_the_deepest_existing_key() {
        let s =
            yaml::parse("kind: Deployment\nspec:\n  template:\n    metadata:\n      labels: {}\n");
        let d = Doc {
            file: "d.yaml".into(),
            node: s.docs[0].clone(),
            rendered: None,
        };
        let p = [
            Seg::K("spec"),
            Seg::K("template"),
            Seg::K("metadata"),
            Seg::K("annotations"),
        ];
        assert_eq!(d.locate(&p), ("d.yaml".into(), 4));
    }

    #[test]
    fn helm_output_splits_per_source() {
        let c = helm_chunks(
            "---\n# Source: c/templates/a.yaml\nkind: A\n---\n# Source: c/templates/b.yaml\nkind: B\n",
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].0.as_deref(), Some("c/templates/b.yaml"));
    }

    #[test]
    fn paths_normalise_without_the_file_system() {
        assert_eq!(
            normalize(Path::new("k/overlays/prod/../../base")),
            PathBuf::from("k/base")
        );
    }
}
