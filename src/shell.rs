//! What the shell and `man` need: completion scripts (clap_complete) and the man page
//! (clap_mangen), both generated from the same clap definition as the parser, so they never
//! drift from it. Nothing here is committed as a generated file.

use crate::cli::Shell;

/// The completion script for a shell, for a program started as `name`.
pub fn completion(shell: Shell, name: &'static str) -> Vec<u8> {
    use clap_complete::{Shell as S, generate};
    let mut cmd = crate::cli::command_named(name);
    // kubectl's plugin completion calls a `kubectl_complete-msa_doctor`; a completion script
    // for `kubectl msa-doctor` is named for the binary instead.
    let bin = if name == "msa-doctor" {
        "msa-doctor"
    } else {
        "kubectl-msa_doctor"
    };
    let mut out = Vec::new();
    let s = match shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Powershell => S::PowerShell,
    };
    generate(s, &mut cmd, bin, &mut out);
    out
}

/// The man page, roff, section 1.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = crate::cli::command_named("msa-doctor");
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_names_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Powershell] {
            let s = String::from_utf8(completion(shell, "msa-doctor")).unwrap();
            for word in ["explain", "namespace", "output", "prometheus"] {
                assert!(s.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn the_man_page_is_roff_with_the_options() {
        let m = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(
            m.starts_with(".ie") || m.contains(".TH msa-doctor 1"),
            "{}",
            &m[..200]
        );
        assert!(m.contains("namespace"));
    }
}
