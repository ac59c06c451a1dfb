//! Every laptop: the Unix-only calls (libc, Unix signals, process groups, Unix file modes)
//! sit behind `cfg(unix)`, so the crate builds on Windows. scripts/check-windows.sh proves it
//! with `cargo check --target x86_64-pc-windows-gnu` where that target can be installed; this
//! test holds where it cannot.

use std::path::{Path, PathBuf};

const UNIX_ONLY: [&str; 6] = [
    "libc::",
    "std::os::unix",
    "signal::unix",
    "process_group(",
    "pre_exec(",
    "PermissionsExt",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn is_unix_cfg(line: &str) -> bool {
    let l = line.trim();
    (l.starts_with("#[cfg(") || l.starts_with("#![cfg("))
        && l.contains("unix")
        && !l.contains("not(unix)")
}

/// Whether the line at `i` is inside an item gated on unix: a `#[cfg(unix)]` (or
/// `cfg(all(unix, ...))`) on an enclosing item, found by walking up to lines that open a
/// block at a smaller indentation.
fn gated(lines: &[&str], i: usize) -> bool {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut level = indent(lines[i]);
    let mut j = i;
    while j > 0 {
        j -= 1;
        let l = lines[j];
        if l.trim().is_empty() {
            continue;
        }
        if is_unix_cfg(l) && indent(l) <= level {
            return true;
        }
        if indent(l) < level && !l.trim_start().starts_with("//") {
            // The line that opens the enclosing block: its attributes are just above it.
            level = indent(l);
            let mut k = j;
            while k > 0 && lines[k - 1].trim_start().starts_with("#[") {
                k -= 1;
                if is_unix_cfg(lines[k]) {
                    return true;
                }
            }
        }
    }
    false
}

#[test]
fn unix_only_calls_are_behind_cfg_unix() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    // The practice stack is gated as a whole.
    let sandbox_gated = lib
        .lines()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| is_unix_cfg(w[0]) && w[1].trim() == "pub mod sandbox;");
    assert!(
        sandbox_gated,
        "src/lib.rs: `pub mod sandbox;` is not behind cfg(unix)"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut bad = Vec::new();
    let mut seen = 0;
    for f in files {
        if f.starts_with(root.join("src/sandbox")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim_start().starts_with("//") || !UNIX_ONLY.iter().any(|u| l.contains(u)) {
                continue;
            }
            seen += 1;
            if !gated(&lines, i) {
                bad.push(format!("{}:{}: {}", f.display(), i + 1, l.trim()));
            }
        }
    }
    assert!(
        seen >= 3,
        "the scan found only {seen} Unix-only calls: is it still looking?"
    );
    assert!(
        bad.is_empty(),
        "Unix-only calls outside cfg(unix):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_gate_detector_sees_a_missing_gate() {
    let ungated = "fn f() {\n    unsafe { libc::kill(1, 9) };\n}\n";
    let lines: Vec<&str> = ungated.lines().collect();
    assert!(!gated(&lines, 1));
    let gated_text = "#[cfg(unix)]\nfn f() {\n    unsafe { libc::kill(1, 9) };\n}\n";
    let lines: Vec<&str> = gated_text.lines().collect();
    assert!(gated(&lines, 2));
    let stmt = "fn f() {\n    #[cfg(unix)]\n    cmd.process_group(0);\n}\n";
    let lines: Vec<&str> = stmt.lines().collect();
    assert!(gated(&lines, 2));
}
