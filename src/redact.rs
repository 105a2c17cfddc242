//! Keeping secrets out of everything the tool prints or persists: `Secret` for every
//! secret-bearing setting (its `Debug` and `Display` redact), `redact_url` for URLs shown in
//! messages and saved plans (userinfo and credential query parameters), and `scrub` for foreign
//! text the tool writes into Trinity's database (the agents' own error messages), with the rules
//! of Trinity's backend sanitizer.

use std::sync::LazyLock;

use regex::Regex;

/// What every redacted part is replaced by in our own messages.
pub(crate) const REDACTED: &str = "***";
/// What `scrub` puts in place of a credential: Trinity's own placeholder.
pub(crate) const SCRUBBED: &str = "***REDACTED***";

/// A secret-bearing value (a shared secret, or a URL that may carry a password). It prints as
/// `***` (a URL: redacted with `redact_url`); only `expose` hands out the value itself, to the
/// code that sends it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The value fit for messages: a URL with its credentials redacted, anything else `***`.
    pub(crate) fn shown(&self) -> String {
        if self.0.contains("://") {
            redact_url(&self.0)
        } else {
            REDACTED.to_owned()
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.shown())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// A query parameter whose value is a credential (libpq's `password`, `sslpassword`, and any key
/// that names a secret).
fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token", "auth", "cred", "key", "user"]
        .iter()
        .any(|word| key.contains(word))
}

/// A URL fit for messages: userinfo (user and password) becomes `***`, and so does the value of
/// every query parameter that names a credential. Anything that does not parse as a URL is
/// withheld whole.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable URL>".to_owned();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Both calls fail only for URLs that cannot have userinfo, which then have none.
        let _ = parsed.set_password(None);
        let _ = parsed.set_username(REDACTED);
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_credential_key(&key) {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // An agent URL template stays readable.
    parsed.to_string().replace("%7Bagent%7D", "{agent}")
}

/// Values that are credentials by their shape, as Trinity's backend sanitizer
/// (`utils/credential_sanitizer.py`) lists them; applied in this order.
static SECRET_VALUES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"sk-[a-zA-Z0-9]{20,}",
        r"sk-proj-[a-zA-Z0-9\-_]{20,}",
        r"sk-ant-[a-zA-Z0-9\-_]{20,}",
        r"ghp_[a-zA-Z0-9]{36,}",
        r"github_pat_[a-zA-Z0-9_]{22,}",
        r"gho_[a-zA-Z0-9]{36,}",
        r"ghs_[a-zA-Z0-9]{36,}",
        r"ghr_[a-zA-Z0-9]{36,}",
        r"xoxb-[a-zA-Z0-9\-]+",
        r"xoxp-[a-zA-Z0-9\-]+",
        r"xoxa-[a-zA-Z0-9\-]+",
        r"AKIA[A-Z0-9]{16}",
        r"trinity_mcp_[a-zA-Z0-9]{16,}",
        r"Bearer\s+[a-zA-Z0-9\-_.]+",
        r"Basic\s+[a-zA-Z0-9+/=]+",
    ]
    .iter()
    .map(|pattern| Regex::new(pattern).expect("a valid pattern"))
    .collect()
});

/// `KEY=value`, the value bare or quoted. The key cannot contain whitespace, quotes or `=`, so a
/// match always starts at the beginning of a key (the leftmost match), as Trinity's look-behind
/// ensures.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([^\s"'=]+)=("[^"]*"|'[^']*'|["']?[^\s"']+)"#).expect("a valid pattern")
});

/// Key names whose values are credentials: containing one of these, or starting with one of the
/// prefixes (Trinity tests containment for both; so does this).
const SENSITIVE_KEY_PARTS: [&str; 13] = [
    "API_KEY",
    "API_SECRET",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "CREDENTIAL",
    "PRIVATE_KEY",
    "AUTH",
    "ANTHROPIC_",
    "OPENAI_",
    "GITHUB_",
    "AWS_",
    "TRINITY_MCP",
];

/// Foreign text with every credential replaced by `***REDACTED***`, the way Trinity's backend
/// scrubs execution text before it persists it: token shapes first, then the values of
/// `KEY=value` pairs whose key names a secret (the pair becomes `KEY=***REDACTED***`). Where
/// Trinity leaves a quoted value with a space, or one with an unclosed quote, as it is, this
/// redacts it too: redacting more is never a leak.
pub(crate) fn scrub(text: &str) -> String {
    let mut result = text.to_owned();
    for pattern in SECRET_VALUES.iter() {
        if pattern.is_match(&result) {
            result = pattern.replace_all(&result, SCRUBBED).into_owned();
        }
    }
    KEY_VALUE
        .replace_all(&result, |caps: &regex::Captures<'_>| {
            let key = &caps[1];
            let upper = key.to_ascii_uppercase();
            if SENSITIVE_KEY_PARTS.iter().any(|part| upper.contains(part)) {
                format!("{key}={SCRUBBED}")
            } else {
                caps[0].to_owned()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_credential_parameters() {
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:hunter2@host/"),
            "redis://***@host/"
        );
        assert_eq!(
            redact_url("https://ghp_token@gw.example/agents/{agent}"),
            "https://***@gw.example/agents/{agent}"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact_url(
                "postgres://db/trinity?password=hunter2&sslmode=disable&sslpassword=x&api_key=y"
            ),
            "postgres://db/trinity?password=***&sslmode=disable&sslpassword=***&api_key=***"
        );
        assert_eq!(redact_url("not a url hunter2"), "<unparseable URL>");
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        let url = Secret::new("postgres://u:hunter2@db/x?password=hunter2");
        assert!(!format!("{url} {url:?}").contains("hunter2"), "{url:?}");
        assert_eq!(url.expose(), "postgres://u:hunter2@db/x?password=hunter2");
    }

    #[test]
    fn scrubs_every_token_shape_trinity_knows() {
        let tokens = [
            format!("sk-{}", "a1".repeat(12)),
            format!("sk-proj-{}", "a_-1".repeat(6)),
            format!("sk-ant-api03-{}", "Ab9_".repeat(6)),
            format!("ghp_{}", "x".repeat(36)),
            format!("github_pat_{}", "A_1".repeat(8)),
            format!("gho_{}", "y".repeat(40)),
            format!("ghs_{}", "z".repeat(36)),
            format!("ghr_{}", "w".repeat(36)),
            "xoxb-123-456-abc".to_owned(),
            "xoxp-1-2-3".to_owned(),
            "xoxa-2-xyz".to_owned(),
            "AKIAIOSFODNN7EXAMPLE".to_owned(),
            format!("trinity_mcp_{}", "k".repeat(16)),
            "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig".to_owned(),
            "Basic dXNlcjpwYXNz".to_owned(),
        ];
        for token in &tokens {
            let text = format!("call failed ({token}) at step 3");
            let scrubbed = scrub(&text);
            assert_eq!(
                scrubbed, "call failed (***REDACTED***) at step 3",
                "{token}"
            );
        }
        // Too short to be one of those shapes: left alone.
        for harmless in ["sk-short", "ghp_abc", "AKIA123", "Bearer", "task-1"] {
            assert_eq!(scrub(harmless), harmless);
        }
    }

    #[test]
    fn scrubs_values_of_sensitive_keys() {
        for (text, expected) in [
            (
                "ANTHROPIC_API_KEY=abc123 rest",
                "ANTHROPIC_API_KEY=***REDACTED*** rest",
            ),
            (
                "export DB_PASSWORD=\"s3 cr3t\" next",
                "export DB_PASSWORD=***REDACTED*** next",
            ),
            ("PASSWORD=\"unclosed", "PASSWORD=***REDACTED***"),
            ("my_token='abc'", "my_token=***REDACTED***"),
            ("GITHUB_USER=octo", "GITHUB_USER=***REDACTED***"),
            ("AWS_REGION=eu-west-1", "AWS_REGION=***REDACTED***"),
            ("x-auth-header=v", "x-auth-header=***REDACTED***"),
            ("client_secret=v", "client_secret=***REDACTED***"),
            ("TRINITY_MCP_URL=v", "TRINITY_MCP_URL=***REDACTED***"),
            (
                "private_key=v credential_file=w",
                "private_key=***REDACTED*** credential_file=***REDACTED***",
            ),
            ("PATH=/usr/bin MODE=fast", "PATH=/usr/bin MODE=fast"),
            ("a==b", "a==b"),
        ] {
            assert_eq!(scrub(text), expected, "{text}");
        }
    }
}
