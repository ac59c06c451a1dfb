//! One redactor and one sanitiser for every text that came from a server or a credential
//! source, applied before anything reaches a report.
//!
//! Secrets are registered as they become known (the Grafana password and token when settings
//! are resolved, `user:password` in base64, the session cookie after a login, a kube bearer
//! token or client key), and every registered value is replaced by `<redacted>` wherever it
//! appears. Patterns that are secrets whatever their value (an `Authorization:` header, a
//! `grafana_session=` cookie, a bearer token, a PEM private key, a JWT) are redacted too.
//! The sanitiser removes control characters and terminal escape sequences (keeping new lines
//! and tabs), so a server cannot rewrite the user's terminal.

use base64::Engine;
use regex::Regex;
use std::sync::{LazyLock, RwLock};

/// What a redacted secret is replaced by.
pub const MASK: &str = "<redacted>";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // A header echoed back: keep the name, drop the value.
        (
            r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-grafana-token)(\s*[:=]\s*)[^\r\n]+",
            "$1$2<redacted>",
        ),
        (r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{12,}", "$1 <redacted>"),
        // Basic credentials are base64: a word of prose after "basic" has no digit, + / or =.
        (r"(?i)\b(basic)\s+[A-Za-z0-9+/]*[0-9+/=][A-Za-z0-9+/=]*", "$1 <redacted>"),
        // Session cookies, wherever they are quoted.
        (r"(?i)\b(grafana_session|grafana_sess)=([^;&\s]+)", "$1=<redacted>"),
        // Credentials in a URL's query or a form body.
        (
            r"(?i)([?&])(token|access_token|id_token|password|passwd|secret|api_key|apikey)=([^&#\s]+)",
            "$1$2=<redacted>",
        ),
        (
            r#"(?i)"(password|token|access_token|secret|client-key-data|client_key_data)"\s*:\s*"[^"]*""#,
            r#""$1":"<redacted>""#,
        ),
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
            "<redacted private key>",
        ),
        // JWTs (kube service-account tokens, OIDC id tokens).
        (
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            "<redacted>",
        ),
        // Grafana service-account tokens and API keys.
        (r"\bglsa_[A-Za-z0-9_]{8,}", "<redacted>"),
        (r"\beyJrIjoi[A-Za-z0-9=_-]+", "<redacted>"),
        // User info in a URL.
        (r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", "$1<redacted>@"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("a valid pattern"), r))
    .collect()
});

/// Passwords every installation guide prints: not secrets, and masking them would mangle
/// ordinary words ("admin").
const PUBLIC_DEFAULTS: &[&str] = &["admin", "password", "prom-operator", "grafana", "changeme"];

/// Registers a secret: from now on it never appears in a cleaned text. Short values (under 4
/// characters) and the public default passwords are ignored: replacing them would mangle
/// ordinary words.
pub fn register(secret: &str) {
    let s = secret.trim();
    if s.len() < 4 || PUBLIC_DEFAULTS.contains(&s) {
        return;
    }
    let mut v = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
        // Longest first, so a secret that contains another is masked whole.
        v.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// Registers a user and password, and the forms they travel in (basic auth's base64).
pub fn register_credentials(user: &str, password: &str) {
    if password == user || PUBLIC_DEFAULTS.contains(&password) {
        return;
    }
    register(password);
    if !password.is_empty() {
        let pair = format!("{user}:{password}");
        register(&base64::engine::general_purpose::STANDARD.encode(&pair));
        register(&pair);
    }
}

/// Replaces every registered secret and every secret-shaped text by [`MASK`].
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    {
        let v = SECRETS.read().unwrap_or_else(|e| e.into_inner());
        for s in v.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
    }
    for (re, with) in PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *with).into_owned();
        }
    }
    out
}

/// Removes terminal escape sequences and control characters (new lines and tabs stay).
pub fn sanitize(text: &str) -> String {
    static ESC: LazyLock<Regex> = LazyLock::new(|| {
        // CSI ... final byte, OSC ... BEL/ST, and lone two-byte escapes.
        Regex::new(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\u{9b}[0-?]*[ -/]*[@-~]")
            .expect("a valid pattern")
    });
    let no_esc = if text.contains('\u{1b}') || text.contains('\u{9b}') {
        ESC.replace_all(text, "").into_owned()
    } else {
        text.to_string()
    };
    no_esc
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// [`sanitize`] then [`redact`]: what every server text goes through.
pub fn clean(text: &str) -> String {
    redact(&sanitize(text))
}

/// Cleans every string inside a JSON value, keys included.
pub fn clean_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let c = clean(s);
            if c != *s {
                *s = c;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
        serde_json::Value::Object(m) => {
            let dirty: Vec<String> = m.keys().filter(|k| clean(k) != **k).cloned().collect();
            for k in dirty {
                if let Some(x) = m.remove(&k) {
                    m.insert(clean(&k), x);
                }
            }
            m.values_mut().for_each(clean_json);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_their_encodings_are_masked() {
        register_credentials("canary-user", "s3cret-Canary-77");
        let b64 = base64::engine::general_purpose::STANDARD.encode("canary-user:s3cret-Canary-77");
        let t = format!("login failed for s3cret-Canary-77; header was Basic {b64} ok");
        let c = redact(&t);
        assert!(!c.contains("s3cret-Canary-77"), "{c}");
        assert!(!c.contains(&b64), "{c}");
        assert!(c.contains("login failed"));
    }

    #[test]
    fn secret_shaped_text_is_masked_without_registration() {
        for (t, gone) in [
            ("Authorization: Bearer abcdefghijkl", "abcdefghijkl"),
            (
                "cookie grafana_session=0123456789abcdef; Path=/",
                "0123456789abcdef",
            ),
            (
                "token glsa_AbCdEf0123456789_deadbeef here",
                "glsa_AbCdEf0123456789",
            ),
            ("see http://admin:hunter22@grafana:3000/api", "hunter22"),
            (
                "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
                "eyJzdWIiOiJzeXN0ZW0ifQ",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
                "MIIEabc",
            ),
            (r#"{"password":"pw-value-1"}"#, "pw-value-1"),
        ] {
            let c = redact(t);
            assert!(!c.contains(gone), "{t:?} -> {c:?}");
        }
    }

    #[test]
    fn escapes_and_control_characters_are_removed() {
        let t = "ok\x1b[2J\x1b]0;title\x07 done\r\x08\nnext\tcol\u{9b}31m";
        assert_eq!(sanitize(t), "ok done\nnext\tcol");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        register_credentials("admin", "admin");
        for t in [
            "rate(http_server_requests_seconds_count{uri=\"/orders\"}[1m]) token count",
            "admin/admin still logs in; password=unset token=unset",
            "basic authentication works on every path; a bearer token",
        ] {
            assert_eq!(clean(t), t);
        }
    }
}
