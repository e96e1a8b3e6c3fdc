//! Secrets kept out of plans. A plan is made to be committed, so every
//! plan format shows `<redacted>` in place of:
//!
//! - the value of an environment variable whose name looks secret
//!   ([`secret_name`]: one of its words is a token, secret, password,
//!   passphrase, credential or a credential's key);
//! - the argument of a long option whose name looks secret, as one word
//!   (`--api-key=…`) or two (`--token …`);
//! - the password of a URL (`scheme://user:…@host`).
//!
//! [`redact`] applies this to a whole [`Plan`] (group settings, processes,
//! readiness probes); `flowrun plan --show-secrets` skips it. `up` always
//! runs the plan as written. FR310 (`check/fr310_secret_in_file.rs`) uses
//! the same tests to point at secrets written in the file itself.

use super::Plan;
use crate::ast::Probe;
use crate::model::Command;

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Whether a variable or option name looks like it holds a secret. The
/// name is read as words (split at `_`, `-`, `.` and lower-to-upper case
/// changes), so a word must *be* a secret, not contain one:
///
/// - a word ending in `token`, `secret`, `password`, `passwd`,
///   `passphrase` or `credential(s)` (`API_TOKEN`, `PGPASSWORD`,
///   `authtoken`), or one of `apikey`, `privatekey`, `accesskey`,
///   `secretkey`;
/// - `key` alone, or after a word that makes it a credential (`API_KEY`,
///   `--access-key`, `SIGNING_KEY`), but not a routing, cache or sort key;
/// - unless the last word says the name is about the secret, not the
///   secret itself: where it is kept (`…_FILE`, `_PATH`, `_DIR`, `_URL`),
///   or a property of it (`_EXPIRES`, `_TTL`, `_LENGTH`, `_PREFIX`,
///   `_MODE`, `_TYPE`, `_NAME`, …).
///
/// So `--tokenizer`, `--max-num-batched-tokens`, `--keyfile`,
/// `--keyspace`, `CELERY_TASK_DEFAULT_ROUTING_KEY`,
/// `JWT_ACCESS_TOKEN_EXPIRES` and `PASSWORD_MIN_LENGTH` are not secrets.
pub fn secret_name(name: &str) -> bool {
    let words = name_words(name);
    let Some(last) = words.last() else {
        return false;
    };
    const ABOUT: &[&str] = &[
        "file",
        "files",
        "path",
        "dir",
        "directory",
        "url",
        "uri",
        "endpoint",
        "expires",
        "expiry",
        "expiration",
        "ttl",
        "lifetime",
        "length",
        "len",
        "size",
        "prefix",
        "suffix",
        "mode",
        "type",
        "name",
        "header",
        "env",
        "var",
    ];
    if words.len() > 1 && ABOUT.contains(&last.as_str()) {
        return false;
    }
    const ENDINGS: &[&str] = &[
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
    ];
    const WHOLE: &[&str] = &["apikey", "privatekey", "accesskey", "secretkey"];
    const KEY_KINDS: &[&str] = &[
        "api",
        "secret",
        "private",
        "access",
        "signing",
        "encryption",
        "master",
        "license",
        "auth",
        "client",
        "app",
        "account",
        "session",
        "webhook",
        "hmac",
        "jwt",
        "ssh",
        "deploy",
        "service",
        "admin",
        "root",
    ];
    words.iter().enumerate().any(|(i, w)| {
        ENDINGS.iter().any(|e| w.ends_with(e))
            || WHOLE.contains(&w.as_str())
            || (w == "key" && (i == 0 || KEY_KINDS.contains(&words[i - 1].as_str())))
    })
}

/// A name's words, lower case: split at `_`, `-`, `.` and where a lower
/// case letter or digit is followed by an upper case one.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.') {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// A value that only refers to a secret held elsewhere: a shell expansion
/// (`$TOKEN`, `"${TOKEN}"`) or a placeholder.
pub fn is_reference(value: &str) -> bool {
    let v = value.trim_matches(|c| c == '"' || c == '\'');
    v.starts_with('$') || (v.starts_with('{') && v.ends_with('}'))
}

/// `--opt=VALUE` where VALUE is a [reference](is_reference) or empty.
fn inline_reference(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(_, v)| v.is_empty() || is_reference(v))
}

/// The name of a long option that takes a secret: `--token` or
/// `--api-key=…` gives `Some((name, has_inline_value))`.
pub fn secret_option(word: &str) -> Option<(&str, bool)> {
    let rest = word.strip_prefix("--")?;
    let (name, inline) = match rest.split_once('=') {
        Some((n, _)) => (n, true),
        None => (rest, false),
    };
    (!name.is_empty() && secret_name(name)).then_some((name, inline))
}

/// Byte range of the password in a URL's `user:password@` part, if any.
pub fn url_password(text: &str) -> Option<(usize, usize)> {
    let scheme_end = text.find("://")? + 3;
    let rest = &text[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    let (start, end) = (scheme_end + colon + 1, scheme_end + at);
    (start < end).then_some((start, end))
}

/// `text` with every URL password in it replaced.
fn without_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((a, b)) = url_password(rest) {
        out.push_str(&rest[..a]);
        out.push_str(REDACTED);
        rest = &rest[b..];
    }
    out.push_str(rest);
    out
}

/// An argv with secret option values and URL passwords replaced.
pub fn argv(words: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut hide_next = false;
    for w in words {
        if hide_next {
            hide_next = false;
            if !is_reference(w) {
                out.push(REDACTED.to_string());
                continue;
            }
        }
        match secret_option(w) {
            Some((name, true)) if !inline_reference(w) => {
                out.push(format!("--{name}={REDACTED}"));
            }
            Some((_, true)) => out.push(w.clone()),
            Some((_, false)) => {
                out.push(w.clone());
                hide_next = true;
            }
            None => out.push(without_url_passwords(w)),
        }
    }
    out
}

/// A shell script with the same replacements, word by word (whitespace is
/// kept as written).
pub fn script(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut hide_next = false;
    let mut rest = text;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let w = &rest[..end];
        rest = &rest[end..];
        if w.is_empty() {
            continue;
        }
        if hide_next && !is_reference(w) {
            out.push_str(REDACTED);
            hide_next = false;
        } else {
            hide_next = false;
            match secret_option(w) {
                Some((name, true)) if !inline_reference(w) => {
                    out.push_str(&format!("--{name}={REDACTED}"));
                }
                Some((_, true)) => out.push_str(w),
                Some((_, false)) => {
                    out.push_str(w);
                    hide_next = true;
                }
                None => out.push_str(&without_url_passwords(w)),
            }
        }
    }
    out
}

/// An environment value: all of it when the name looks secret, else any
/// URL password in it.
pub fn env_value(name: &str, value: &str) -> String {
    if secret_name(name) && !value.is_empty() && !is_reference(value) {
        REDACTED.to_string()
    } else {
        without_url_passwords(value)
    }
}

fn probe(p: &mut Probe) {
    match p {
        Probe::Tcp(s) | Probe::Http(s) | Probe::Log(s) | Probe::File(s) => {
            *s = without_url_passwords(s);
        }
        Probe::Exec(s) => *s = script(s),
        Probe::Notify => {}
    }
}

/// Replace every secret in the plan (see the module docs). Linear in the
/// size of the plan.
pub fn redact(plan: &mut Plan) {
    for g in &mut plan.topology.groups {
        match &mut g.command.node {
            Command::Run { argv: words } => *words = argv(words),
            Command::Sh { script: s } => *s = script(s),
        }
        for (k, v) in &mut g.env {
            *v = env_value(k, v);
        }
        if let Some(r) = &mut g.ready {
            probe(&mut r.probe);
        }
    }
    for p in &mut plan.processes {
        let is_sh = plan
            .topology
            .groups
            .get(p.group)
            .is_some_and(|g| matches!(g.command.node, Command::Sh { .. }));
        if is_sh && p.argv.len() == 3 {
            p.argv[2] = script(&p.argv[2]);
        } else {
            p.argv = argv(&p.argv);
        }
        for (k, v) in &mut p.env {
            *v = env_value(k, v);
        }
        if let Some(r) = &mut p.ready {
            probe(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn names_that_look_secret() {
        for n in [
            "API_TOKEN",
            "db_password",
            "SecretKey",
            "AWS_SECRET_ACCESS_KEY",
            "PGPASSWD",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "PATH",
            "LOG_LEVEL",
            "QUEUE",
            "PORT",
            "POSTGRES_PASSWORD_FILE",
            "key-file",
            // Real settings that only mention a secret word.
            "keyfile",
            "ssl-keyfile",
            "tokenizer",
            "tokenizer-mode",
            "max-num-batched-tokens",
            "keyspace",
            "CELERY_TASK_DEFAULT_ROUTING_KEY",
            "CACHE_KEY_PREFIX",
            "JWT_ACCESS_TOKEN_EXPIRES",
            "PASSWORD_MIN_LENGTH",
            "KEYCLOAK_URL",
            "partition-key",
            "PWD",
        ] {
            assert!(!secret_name(n), "{n}");
        }
        for n in [
            "GITHUB_TOKEN",
            "PGPASSWORD",
            "SECRET_KEY_BASE",
            "API_KEY",
            "apiKey",
            "access-key",
            "STRIPE_API_KEY",
            "SIGNING_KEY",
            "key",
            "DB_CREDENTIALS",
            "authtoken",
        ] {
            assert!(secret_name(n), "{n}");
        }
    }

    #[test]
    fn options_and_urls_are_redacted_in_argv_and_scripts() {
        assert_eq!(
            argv(&words(&[
                "app",
                "--token",
                "abc",
                "--api-key=xyz",
                "--port",
                "80"
            ])),
            words(&[
                "app",
                "--token",
                REDACTED,
                "--api-key=<redacted>",
                "--port",
                "80"
            ])
        );
        assert_eq!(
            argv(&words(&["psql", "postgres://app:hunter2@db:5432/app?x=@"])),
            words(&["psql", "postgres://app:<redacted>@db:5432/app?x=@"])
        );
        assert_eq!(
            script("exec app  --password s3cret\n--user u"),
            "exec app  --password <redacted>\n--user u"
        );
        assert_eq!(
            script("exec sync --token \"$SYNC_TOKEN\" --key=${K}"),
            "exec sync --token \"$SYNC_TOKEN\" --key=${K}"
        );
        assert_eq!(url_password("http://user@host/"), None);
        assert_eq!(url_password("http://host:80/a:b@c"), None);
        assert_eq!(env_value("DB_PASSWORD", "x"), REDACTED);
        assert_eq!(env_value("DB_PASSWORD", ""), "");
        assert_eq!(
            env_value("DATABASE_URL", "redis://:pw@r:6379"),
            "redis://:<redacted>@r:6379"
        );
    }
}
