//! The application side, when its source is in the repository: Gradle (`build.gradle`,
//! `.kts`, version catalogs) or Maven (`pom.xml`) modules, their Spring configuration
//! (`application*.yml|yaml|properties`, profiles too) and Spring Security configurations.
//!
//! From these it tells whether a module can serve Prometheus text at all (web starter,
//! actuator, Micrometer's Prometheus registry, the endpoint exposed) and at which port and
//! path, so the scrape configuration is checked against the application, not against a fixed
//! `/actuator/prometheus`. Reading only; the findings are made in [`super::rules`].

use super::yaml::{self, Node, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a module is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildKind {
    /// `build.gradle`.
    Gradle,
    /// `build.gradle.kts`.
    GradleKts,
    /// `pom.xml`.
    Maven,
}

/// A module with a build file.
#[derive(Debug)]
pub struct Module {
    /// Its folder.
    pub dir: PathBuf,
    /// The folder's name.
    pub name: String,
    /// The build file, shown as read.
    pub build_file: String,
    /// Gradle or Maven.
    pub kind: BuildKind,
    /// The line of the `dependencies` block, where a dependency is added.
    pub deps_line: u32,
    /// The dependency text searched (comments and dependencyManagement removed, version
    /// catalog aliases resolved, the parent's common dependencies added).
    deps: String,
    /// The Maven artifactId.
    pub artifact: Option<String>,
    /// The image the build pushes (jib).
    pub image: Option<String>,
    /// Spring configuration files: (shown path, profile or None, text).
    configs: Vec<(String, Option<String>, String)>,
    /// A Spring Security configuration: file and line.
    pub security: Option<(String, u32, bool)>,
}

/// One Spring property as written.
#[derive(Clone, Debug)]
pub struct Prop {
    /// The value.
    pub value: String,
    /// The file.
    pub file: String,
    /// The line.
    pub line: u32,
}

/// Where Prometheus should scrape an application, and why.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The port.
    pub port: i64,
    /// The path.
    pub path: String,
    /// Why this path and port, e.g. "order/src/main/resources/application.yml:4 sets ...".
    pub because: String,
}

impl Module {
    /// Whether the dependency text mentions this artifact.
    pub fn has(&self, artifact: &str) -> bool {
        self.deps.contains(artifact)
    }

    /// A Spring Boot build.
    pub fn spring_boot(&self) -> bool {
        self.deps.contains("spring-boot") || self.deps.contains("org.springframework.boot")
    }

    /// A web server is in the build (servlet or reactive).
    pub fn web(&self) -> bool {
        self.has("spring-boot-starter-web")
            || self.has("spring-cloud-starter-gateway")
            || self.has("spring-boot-starter-jersey")
    }

    /// The line to add a dependency, in this build's syntax.
    pub fn dependency_line(&self, group: &str, artifact: &str) -> String {
        match self.kind {
            BuildKind::Gradle => format!("implementation '{group}:{artifact}'"),
            BuildKind::GradleKts => format!("implementation(\"{group}:{artifact}\")"),
            BuildKind::Maven => format!(
                "<dependency>\n  <groupId>{group}</groupId>\n  <artifactId>{artifact}</artifactId>\n</dependency>"
            ),
        }
    }

    /// The main Spring configuration file, if any.
    pub fn main_config(&self) -> Option<&str> {
        self.configs
            .iter()
            .find(|(_, p, _)| p.is_none())
            .map(|(f, _, _)| f.as_str())
    }

    /// The Spring properties in effect for these active profiles, environment overriding.
    pub fn props(&self, env: &BTreeMap<String, String>) -> Props {
        let mut profiles: Vec<String> = env
            .get("SPRING_PROFILES_ACTIVE")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        let mut map: BTreeMap<String, Prop> = BTreeMap::new();
        let mut layers: Vec<Layer> = Vec::new();
        for (file, profile, text) in &self.configs {
            if file.ends_with(".properties") {
                layers.push((profile.clone(), properties(file, text)));
            } else {
                for (doc_profile, entries) in yaml_props(file, text) {
                    layers.push((profile.clone().or(doc_profile), entries));
                }
            }
        }
        // Profile-less layers first; their spring.profiles.active picks the profiles.
        for (p, entries) in &layers {
            if p.is_none() {
                for (k, v) in entries {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        if profiles.is_empty()
            && let Some(p) = map.get("spring.profiles.active")
        {
            profiles = p.value.split(',').map(|s| s.trim().to_string()).collect();
        }
        for active in &profiles {
            for (p, entries) in &layers {
                if p.as_deref() == Some(active.as_str()) {
                    for (k, v) in entries {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for (name, value) in env {
            map.insert(
                format!("env:{name}"),
                Prop {
                    value: value.clone(),
                    file: String::new(),
                    line: 0,
                },
            );
        }
        Props { map }
    }
}

/// Properties of one file or YAML document, with the profile they apply to (`None`: always).
type Layer = (Option<String>, Vec<(String, Prop)>);

/// Spring properties by canonical key (lower case, without dashes).
#[derive(Debug, Default)]
pub struct Props {
    map: BTreeMap<String, Prop>,
}

impl Props {
    /// Only the container's environment (when the application's source is not here).
    pub fn from_env(env: &BTreeMap<String, String>) -> Self {
        Props {
            map: env
                .iter()
                .map(|(k, v)| {
                    (
                        format!("env:{k}"),
                        Prop {
                            value: v.clone(),
                            file: String::new(),
                            line: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    /// A property; the environment variable form (`MANAGEMENT_SERVER_PORT`) wins.
    pub fn get(&self, key: &str) -> Option<Prop> {
        let env = key.replace('-', "").replace('.', "_").to_uppercase();
        if let Some(p) = self.map.get(&format!("env:{env}")) {
            return Some(Prop {
                value: p.value.clone(),
                file: format!("the container's environment variable {env}"),
                line: 0,
            });
        }
        self.map.get(&canon(key)).cloned()
    }

    /// A list property written either as `a,b` or as a YAML list.
    pub fn list(&self, key: &str) -> Option<(Vec<String>, Prop)> {
        if let Some(p) = self.get(key) {
            return Some((
                p.value.split(',').map(|s| s.trim().to_string()).collect(),
                p,
            ));
        }
        let c = canon(key);
        let items: Vec<&Prop> = (0..)
            .map_while(|i| self.map.get(&format!("{c}[{i}]")))
            .collect();
        let first = (*items.first()?).clone();
        Some((items.iter().map(|p| p.value.clone()).collect(), first))
    }
}

/// A property key as Spring's relaxed binding compares it: lower case, no dashes, and the
/// bracket form of a map key (`a[http.server.requests]`) as the dotted form.
fn canon(k: &str) -> String {
    k.to_lowercase()
        .replace('-', "")
        .replace('[', ".")
        .replace(']', "")
}

fn at(p: &Prop) -> String {
    if p.line == 0 {
        p.file.clone()
    } else {
        format!("{}:{}", p.file, p.line)
    }
}

/// Where the application serves Prometheus text, from its configuration.
pub fn expected(props: &Props) -> Expected {
    let mut because = Vec::new();
    let server = props.get("server.port");
    let mgmt = props.get("management.server.port");
    let num = |p: &Option<Prop>| p.as_ref().and_then(|p| p.value.parse::<i64>().ok());
    let server_port = num(&server).unwrap_or(8080);
    let port = num(&mgmt).unwrap_or(server_port);
    if let Some(p) = &mgmt {
        because.push(format!("management.server.port={} ({})", p.value, at(p)));
    } else if let Some(p) = &server {
        because.push(format!("server.port={} ({})", p.value, at(p)));
    }
    let separate = mgmt.is_some() && port != server_port;
    let context = if separate {
        props.get("management.server.base-path")
    } else {
        props
            .get("server.servlet.context-path")
            .or_else(|| props.get("spring.webflux.base-path"))
    };
    let base = props.get("management.endpoints.web.base-path");
    let mapping = props.get("management.endpoints.web.path-mapping.prometheus");
    for p in [&context, &base, &mapping].into_iter().flatten() {
        because.push(format!("{} ({})", p.value, at(p)));
    }
    let mut path = String::new();
    for part in [
        context.map(|p| p.value).unwrap_or_default(),
        base.map(|p| p.value).unwrap_or_else(|| "/actuator".into()),
        mapping
            .map(|p| p.value)
            .unwrap_or_else(|| "prometheus".into()),
    ] {
        let part = part.trim_matches('/');
        if !part.is_empty() {
            path.push('/');
            path.push_str(part);
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    Expected {
        port,
        path,
        because: if because.is_empty() {
            "Spring Boot's defaults".into()
        } else {
            because.join(", ")
        },
    }
}

fn properties(file: &str, text: &str) -> Vec<(String, Prop)> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
            continue;
        }
        let Some(pos) = l.find(['=', ':']) else {
            continue;
        };
        let (k, v) = (l[..pos].trim(), l[pos + 1..].trim());
        out.push((
            canon(k),
            Prop {
                value: v.to_string(),
                file: file.to_string(),
                line: i as u32 + 1,
            },
        ));
    }
    out
}

/// Each YAML document's properties, flattened, with the profile it is activated on.
fn yaml_props(file: &str, text: &str) -> Vec<Layer> {
    let s = yaml::parse(text);
    s.docs
        .iter()
        .map(|d| {
            let mut out = Vec::new();
            flatten(file, "", d, &mut out);
            let profile = out
                .iter()
                .find(|(k, _)| k == "spring.config.activate.onprofile" || k == "spring.profiles")
                .map(|(_, p)| p.value.clone());
            (profile, out)
        })
        .collect()
}

fn flatten(file: &str, prefix: &str, n: &Node, out: &mut Vec<(String, Prop)>) {
    match &n.value {
        Value::Map(m) => {
            for e in m {
                let k = if prefix.is_empty() {
                    canon(&e.key)
                } else {
                    format!("{prefix}.{}", canon(&e.key))
                };
                if let Value::Scalar { text, .. } = &e.node.value {
                    out.push((
                        k,
                        Prop {
                            value: text.clone(),
                            file: file.to_string(),
                            line: e.line,
                        },
                    ));
                } else {
                    flatten(file, &k, &e.node, out);
                }
            }
        }
        Value::Seq(s) => {
            for (i, item) in s.iter().enumerate() {
                let k = format!("{prefix}[{i}]");
                if let Value::Scalar { text, .. } = &item.value {
                    out.push((
                        k,
                        Prop {
                            value: text.clone(),
                            file: file.to_string(),
                            line: item.line,
                        },
                    ));
                } else {
                    flatten(file, &k, item, out);
                }
            }
        }
        Value::Scalar { .. } => {}
    }
}

fn show(p: &Path) -> String {
    let s = p.to_string_lossy().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

/// Removes `//` and `/* */` comments (Gradle) or `<!-- -->` comments and
/// `<dependencyManagement>` (Maven): a dependency named there is not one the module has.
fn strip(text: &str, maven: bool) -> String {
    let (re_block, re_line) = if maven {
        (
            regex::Regex::new(r"(?s)<!--.*?-->|<dependencyManagement>.*?</dependencyManagement>"),
            None,
        )
    } else {
        (
            regex::Regex::new(r"(?s)/\*.*?\*/"),
            regex::Regex::new(r"(?m)^\s*//.*$").ok(),
        )
    };
    let mut t = match re_block {
        Ok(r) => r.replace_all(text, "").into_owned(),
        Err(_) => text.to_string(),
    };
    if let Some(r) = re_line {
        t = r.replace_all(&t, "").into_owned();
    }
    t
}

fn line_of(text: &str, pat: &regex::Regex) -> Option<u32> {
    text.lines()
        .position(|l| pat.is_match(l))
        .map(|i| i as u32 + 1)
}

/// Gradle version catalog: alias (with `.` for `-`/`_`) to the modules it names; bundles too.
fn catalog(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(t) = text.parse::<toml::Table>() else {
        return out;
    };
    let dotted = |a: &str| a.replace(['-', '_'], ".");
    if let Some(libs) = t.get("libraries").and_then(|l| l.as_table()) {
        for (alias, v) in libs {
            let m = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Table(t) => t
                    .get("module")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "{}:{}",
                            t.get("group").and_then(|g| g.as_str()).unwrap_or(""),
                            t.get("name").and_then(|g| g.as_str()).unwrap_or("")
                        )
                    }),
                _ => continue,
            };
            out.insert(dotted(alias), m);
        }
    }
    if let Some(b) = t.get("bundles").and_then(|l| l.as_table()) {
        for (alias, v) in b {
            let mods: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .filter_map(|x| out.get(&dotted(x)).cloned())
                        .collect()
                })
                .unwrap_or_default();
            out.insert(format!("bundles.{}", dotted(alias)), mods.join(" "));
        }
    }
    if let Some(p) = t.get("plugins").and_then(|l| l.as_table()) {
        for (alias, v) in p {
            let id = v
                .as_str()
                .map(|s| s.split(':').next().unwrap_or(s).to_string())
                .or_else(|| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
            if let Some(id) = id {
                out.insert(format!("plugins.{}", dotted(alias)), id);
            }
        }
    }
    out
}

/// Reads the modules of the application files.
pub fn modules(files: &[PathBuf]) -> Vec<Module> {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut catalogs: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        if f.to_string_lossy().ends_with(".versions.toml") {
            catalogs.extend(catalog(&read(f)));
        }
    }
    let builds: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n == "build.gradle" || n == "build.gradle.kts" || n == "pom.xml")
        })
        .collect();
    let deps_re = regex::Regex::new(r"^\s*dependencies\s*\{").ok();
    let pom_deps_re = regex::Regex::new(r"<dependencies>").ok();
    let jib_re = regex::Regex::new(
        r#"(?s)\bto\s*\{[^}]*?image\s*=\s*['"]([^'"]+)['"]|<to>\s*<image>([^<]+)</image>"#,
    )
    .ok();
    let parent_re = regex::Regex::new(r"(?s)<parent>.*?</parent>").ok();
    let artifact_re = regex::Regex::new(r"<artifactId>([^<]+)</artifactId>").ok();
    let mut out = Vec::new();
    for b in &builds {
        let Some(dir) = b.parent() else { continue };
        let name_s = b.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kind = match name_s {
            "pom.xml" => BuildKind::Maven,
            "build.gradle.kts" => BuildKind::GradleKts,
            _ => BuildKind::Gradle,
        };
        let raw = read(b);
        let mut deps = strip(&raw, kind == BuildKind::Maven);
        // Common dependencies of a parent build (Gradle subprojects/allprojects, Maven parent).
        for parent in dir.ancestors().skip(1) {
            for pb in &builds {
                if pb.parent() == Some(parent) {
                    let t = read(pb);
                    if kind == BuildKind::Maven
                        || t.contains("subprojects")
                        || t.contains("allprojects")
                    {
                        deps.push('\n');
                        deps.push_str(&strip(&t, pb.ends_with("pom.xml")));
                    }
                }
            }
        }
        let resolved: Vec<String> = catalogs
            .iter()
            .filter(|(alias, _)| {
                let r = format!("libs.{alias}");
                deps.match_indices(&r).any(|(i, _)| {
                    !deps[i + r.len()..]
                        .starts_with(|c: char| c.is_alphanumeric() || c == '.' || c == '_')
                })
            })
            .map(|(_, m)| m.clone())
            .collect();
        for r in resolved {
            deps.push('\n');
            deps.push_str(&r);
        }
        let deps_line = match kind {
            BuildKind::Maven => pom_deps_re.as_ref().and_then(|r| line_of(&raw, r)),
            _ => deps_re.as_ref().and_then(|r| line_of(&raw, r)),
        }
        .unwrap_or(1);
        let image = jib_re.as_ref().and_then(|r| {
            r.captures(&raw).and_then(|c| {
                c.get(1)
                    .or_else(|| c.get(2))
                    .map(|m| m.as_str().trim().to_string())
            })
        });
        let artifact = (kind == BuildKind::Maven)
            .then(|| {
                let own = match &parent_re {
                    Some(p) => p.replace_all(&deps, "").into_owned(),
                    None => deps.clone(),
                };
                artifact_re.as_ref().and_then(|r| {
                    r.captures(&own)
                        .and_then(|c| c.get(1).map(|m| m.as_str().trim().to_string()))
                })
            })
            .flatten();
        out.push(Module {
            dir: dir.to_path_buf(),
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            build_file: show(b),
            kind,
            deps_line,
            deps,
            artifact,
            image,
            configs: Vec::new(),
            security: None,
        });
    }
    // Each other file belongs to the deepest module that holds it.
    for f in files {
        let Some(m) = out
            .iter_mut()
            .filter(|m| f.starts_with(&m.dir))
            .max_by_key(|m| m.dir.components().count())
        else {
            continue;
        };
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "yml" | "yaml" | "properties")
            && (name.starts_with("application") || name.starts_with("bootstrap"))
            && !f.components().any(|c| c.as_os_str() == "test")
        {
            let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
            let profile = stem
                .strip_prefix("application-")
                .or_else(|| stem.strip_prefix("bootstrap-"))
                .map(str::to_string);
            m.configs.push((show(f), profile, read(f)));
        } else if matches!(ext, "java" | "kt") && m.security.is_none() {
            let t = read(f);
            for pat in [
                "SecurityFilterChain",
                "@EnableWebSecurity",
                "WebSecurityConfigurerAdapter",
            ] {
                if let Some(i) = t.lines().position(|l| l.contains(pat)) {
                    m.security = Some((show(f), i as u32 + 1, t.contains("actuator")));
                    break;
                }
            }
        }
    }
    for m in &mut out {
        // application.yml before its profiles, so that the profile files override it.
        m.configs
            .sort_by(|a, b| a.1.is_some().cmp(&b.1.is_some()).then(a.0.cmp(&b.0)));
    }
    out
}

/// A name without the suffixes that differ between an image, a module and a Deployment.
pub fn stem(name: &str) -> &str {
    let mut s = name;
    for suf in [
        "-deployment",
        "-deploy",
        "-service",
        "-svc",
        "-server",
        "-app",
        "-api",
        "-ms",
    ] {
        if let Some(x) = s.strip_suffix(suf)
            && !x.is_empty()
        {
            s = x;
        }
    }
    s
}

/// The base name of an image: `reg.io/team/order-service:1.2` is `order-service`.
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The module that builds a workload's images, if any: by jib image, folder name, artifactId,
/// or the workload's own name, in that order.
pub fn module_for<'m>(
    modules: &'m [Module],
    workload: &str,
    images: &[&str],
) -> Option<&'m Module> {
    let names: Vec<&str> = images.iter().map(|i| image_name(i)).collect();
    let by = |f: &dyn Fn(&Module) -> bool| modules.iter().find(|m| f(m));
    by(&|m| {
        m.image
            .as_deref()
            .is_some_and(|i| names.contains(&image_name(i)))
    })
    .or_else(|| by(&|m| names.contains(&m.name.as_str())))
    .or_else(|| by(&|m| m.artifact.as_deref().is_some_and(|a| names.contains(&a))))
    .or_else(|| {
        by(&|m| names.iter().any(|n| stem(n) == stem(&m.name)) || stem(workload) == stem(&m.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_follows_the_configuration() {
        let mut p = Props::default();
        assert_eq!(expected(&p).path, "/actuator/prometheus");
        assert_eq!(expected(&p).port, 8080);
        for (k, v) in [
            ("management.endpoints.web.base-path", "/manage"),
            ("server.servlet.context-path", "/api"),
        ] {
            p.map.insert(
                canon(k),
                Prop {
                    value: v.into(),
                    file: "a.yml".into(),
                    line: 1,
                },
            );
        }
        assert_eq!(expected(&p).path, "/api/manage/prometheus");
        p.map.insert(
            "env:MANAGEMENT_SERVER_PORT".into(),
            Prop {
                value: "9090".into(),
                file: String::new(),
                line: 0,
            },
        );
        let e = expected(&p);
        assert_eq!((e.port, e.path.as_str()), (9090, "/manage/prometheus"));
    }

    #[test]
    fn stems_and_image_names() {
        assert_eq!(stem("order-deploy"), "order");
        assert_eq!(stem("order-service"), "order");
        assert_eq!(image_name("ghcr.io/x/order-service:1.0"), "order-service");
        assert_eq!(image_name("localhost:5000/order@sha256:ab"), "order");
    }

    #[test]
    fn a_catalog_resolves_aliases() {
        let c = catalog(
            "[libraries]\nmicrometer-prometheus = { module = \"io.micrometer:micrometer-registry-prometheus\" }\n",
        );
        assert_eq!(
            c.get("micrometer.prometheus").map(String::as_str),
            Some("io.micrometer:micrometer-registry-prometheus")
        );
    }

    #[test]
    fn yaml_lists_and_properties_read_alike() {
        let y = yaml_props(
            "a.yml",
            "management:\n  endpoints:\n    web:\n      exposure:\n        include:\n          - health\n          - prometheus\n",
        );
        let props = Props {
            map: y[0].1.iter().cloned().collect(),
        };
        let (l, p) = props
            .list("management.endpoints.web.exposure.include")
            .unwrap();
        assert_eq!(l, vec!["health", "prometheus"]);
        assert_eq!(p.line, 6);
        let pr = properties("a.properties", "# c\nserver.port=8081\n");
        assert_eq!(pr[0].1.line, 2);
        let pr = properties(
            "a.properties",
            "management.metrics.distribution.percentiles-histogram[http.server.requests]=true\n",
        );
        assert_eq!(
            pr[0].0,
            canon("management.metrics.distribution.percentiles-histogram.http.server.requests")
        );
    }
}
