//! What looks like a secret, in a name, a value or any text: what the validation refuses
//! in plain settings and what diagnostics mask in the snippets they show.

/// A variable name that by convention holds a credential (`*TOKEN*`, `*SECRET*`,
/// `*PASSWORD*`, a `KEY` word such as `OPENAI_API_KEY`). Case-insensitive.
pub fn looks_like_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "APIKEY",
        "PRIVATE_KEY",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper.split(['_', '-', '.']).any(|w| w == "KEY")
}

/// A value shaped like a well-known credential: provider API keys, a Telegram bot token, an
/// age secret key, GitHub and Slack tokens.
pub fn looks_like_secret_value(value: &str) -> bool {
    let v = value.trim();
    let prefixed = [
        "sk-",
        "sk_live_",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "AGE-SECRET-KEY-",
        "AKIA",
    ]
    .iter()
    .any(|p| v.starts_with(p) && v.len() >= p.len() + 16);
    // Telegram: `<bot id>:<35 characters>`.
    let telegram = v.split_once(':').is_some_and(|(id, rest)| {
        id.len() >= 6
            && id.chars().all(|c| c.is_ascii_digit())
            && rest.len() >= 30
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    prefixed || telegram
}

/// The text with every quoted string that is, or is the value of a key that names, a secret
/// (and every credential in a quoted URL, see [`crate::redact::mask_url`])
/// replaced by `*` of the same byte length, so positions stay right and snippets shown with a
/// diagnostic never echo a credential. Works line by line on any text, even broken TOML.
pub(crate) fn mask_secret_like_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut masked = line.to_string();
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let quote = bytes[i];
            if quote != b'"' && quote != b'\'' {
                if quote == b'#' {
                    break;
                }
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end] != quote {
                end += if bytes[end] == b'\\' && quote == b'"' {
                    2
                } else {
                    1
                };
            }
            let end = end.min(bytes.len());
            let content = line.get(start..end).unwrap_or("");
            let before = line[..i].trim_end();
            let key = before.strip_suffix('=').map(|b| {
                let b = b.trim_end().trim_end_matches(['"', '\'']);
                let from = b
                    .char_indices()
                    .rfind(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                    .map_or(0, |(p, c)| p + c.len_utf8());
                &b[from..]
            });
            if looks_like_secret_value(content) || key.is_some_and(looks_like_secret_name) {
                masked.replace_range(start..end, &"*".repeat(end - start));
            } else if content.contains("://") {
                // A URL's credentials (a webhook's `user:password@`, `?token=`).
                masked.replace_range(start..end, &crate::redact::mask_url(content));
            }
            i = end + 1;
        }
        out.push_str(&masked);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn secret_shapes() {
        assert!(looks_like_secret_name("OPENAI_API_KEY"));
        assert!(looks_like_secret_name("TELEGRAM_BOT_TOKEN"));
        assert!(looks_like_secret_name("db_password"));
        assert!(!looks_like_secret_name("KEYBOARD"));
        assert!(!looks_like_secret_name("LOG_LEVEL"));
        assert!(looks_like_secret_value(
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
        ));
        assert!(looks_like_secret_value(
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
        ));
        assert!(!looks_like_secret_value("info"));
    }

    #[test]
    pub(super) fn masking_keeps_positions_and_hides_values() {
        let text = "[defaults.env]\nOPENAI_API_KEY = \"sk-abc\" # x\nLOG = \"debug\"\nT = \"123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq\"\nx = { API_TOKEN = 'v', b = \"c\" }\n";
        let masked = mask_secret_like_values(text);
        assert_eq!(masked.len(), text.len());
        assert!(!masked.contains("sk-abc"));
        assert!(!masked.contains("AAHdq"));
        assert!(masked.contains("\"debug\""));
        assert!(masked.contains("API_TOKEN = '*'"));
        assert!(masked.contains("b = \"c\""));
    }
}
