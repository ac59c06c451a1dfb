//! The checks' documentation, `docs/checks.md`, embedded in the binary so that an installed
//! `msa-doctor` can show it (`msa-doctor docs ID`) without the source tree. One `## <id>`
//! heading per check; a section runs to the next `## ` heading.
//!
//! It only reads the embedded text; the report points here with `msa-doctor docs <id>`.

/// `docs/checks.md` as built.
pub const CHECKS_MD: &str = include_str!("../docs/checks.md");

/// Where a check's section lives in the repository, relative to its root (the JSON
/// `docs_url`): the anchor GitHub gives the `## <id>` heading, which drops the dots.
pub fn docs_url(id: &str) -> String {
    format!("docs/checks.md#{}", id.replace('.', ""))
}

/// Whether `docs` points into `docs/checks.md` (so `msa-doctor docs ID` shows the same text).
pub fn is_checks_md(docs: &str) -> bool {
    docs.starts_with("docs/checks.md")
}

/// Every documented id with its section (heading included), in the file's order.
pub fn sections() -> Vec<(&'static str, &'static str)> {
    let mut starts: Vec<(usize, &'static str)> = Vec::new();
    let mut offset = 0;
    let mut in_fence = false;
    for line in CHECKS_MD.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if let (false, Some(rest)) = (in_fence, line.strip_prefix("## ")) {
            starts.push((offset, rest.trim()));
        }
        offset += line.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, (start, id))| {
            let end = starts
                .get(i + 1)
                .map(|(s, _)| *s)
                .unwrap_or(CHECKS_MD.len());
            (*id, CHECKS_MD[*start..end].trim_end())
        })
        .collect()
}

/// The section of one id, when it is documented.
pub fn section(id: &str) -> Option<&'static str> {
    sections()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, s)| s)
}

/// Whether the id has a section.
pub fn is_documented(id: &str) -> bool {
    section(id).is_some()
}

/// The text `msa-doctor docs [ID]` prints, or the usage error for an unknown id.
pub fn show(id: Option<&str>) -> Result<String, String> {
    match id {
        None => {
            let mut s = String::from(
                "Documented checks (msa-doctor docs ID prints one; the source is docs/checks.md):\n",
            );
            for (id, _) in sections() {
                s.push_str("  ");
                s.push_str(id);
                s.push('\n');
            }
            Ok(s)
        }
        Some(id) => match section(id) {
            Some(text) => Ok(format!("{text}\n")),
            None => {
                let ids: Vec<&str> = sections().into_iter().map(|(i, _)| i).collect();
                let near: Vec<&str> = ids
                    .iter()
                    .copied()
                    .filter(|i| {
                        i.contains(id) || id.contains(i.split('.').next_back().unwrap_or(i))
                    })
                    .collect();
                let hint = if near.is_empty() {
                    "`msa-doctor docs` lists them".to_string()
                } else {
                    format!("did you mean {}?", near.join(", "))
                };
                Err(format!("no documentation for check {id:?}: {hint}"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_check_has_a_section() {
        let plan = crate::config::load(&[]).expect("the built-in checks load");
        for c in &plan.checks {
            assert!(
                is_documented(&c.id),
                "{} has no `## {}` in docs/checks.md",
                c.id,
                c.id
            );
        }
    }

    #[test]
    fn built_in_docs_links_are_the_generated_anchors() {
        let plan = crate::config::load(&[]).expect("the built-in checks load");
        for c in &plan.checks {
            if let Some(d) = &c.docs {
                assert_eq!(d, &docs_url(&c.id), "checks/*.toml's docs of {}", c.id);
            }
        }
    }

    #[test]
    fn a_section_is_its_heading_and_body_only() {
        let s = section("grafana.default-password").expect("documented");
        assert!(s.starts_with("## grafana.default-password\n"), "{s}");
        assert!(s.contains("admin"));
        assert!(
            !s.contains("## grafana.datasource"),
            "runs into the next: {s}"
        );
        let last = section("panel.cpu").expect("documented");
        assert!(last.contains("cAdvisor"));
    }

    #[test]
    fn the_list_and_unknown_ids() {
        let list = show(None).unwrap();
        assert!(list.contains("\n  access.grafana\n"), "{list}");
        assert!(!list.contains("The checks"), "the title is not an id");
        let err = show(Some("targets")).unwrap_err();
        assert!(err.contains("prometheus.targets"), "{err}");
        assert!(
            show(Some("nope.nothing"))
                .unwrap_err()
                .contains("msa-doctor docs")
        );
    }
}
