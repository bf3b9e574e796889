//! `mtp logs`: a container's output with the tenant's secret values replaced by
//! `<redacted>` before anything reaches the terminal.
//!
//! Redaction works on whole lines: a chunk from the engine may end inside a value, so the
//! unfinished line waits for the rest (or for the end of the stream).

/// What replaces a secret value.
pub const REDACTED: &str = "<redacted>";

/// Values shorter than this are not redacted: they would blank ordinary words. Every value
/// mtp generates or a provider issues is far longer.
pub const MIN_REDACTED_LEN: usize = 6;

/// Replaces secret values in text.
pub struct Redactor {
    /// Longest first, so a value containing another is replaced whole. Zeroed when dropped:
    /// `mtp logs -f` holds them as long as it runs.
    values: Vec<zeroize::Zeroizing<String>>,
}

impl Redactor {
    /// Redacts each value, and the forms it takes when logged inside JSON or a URL.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        use zeroize::Zeroizing;
        let mut all: Vec<Zeroizing<String>> = Vec::new();
        for v in values.into_iter().filter(|v| v.len() >= MIN_REDACTED_LEN) {
            all.push(Zeroizing::new(v.to_string()));
            let json = Zeroizing::new(serde_json::to_string(v).unwrap_or_default());
            let json = json.trim_matches('"');
            if json != v {
                all.push(Zeroizing::new(json.to_string()));
            }
            let mut url = Zeroizing::new(String::with_capacity(v.len() * 3));
            for b in v.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        url.push(b as char)
                    }
                    _ => url.push_str(&format!("%{b:02X}")),
                }
            }
            if url.as_str() != v {
                all.push(url);
            }
        }
        all.sort_by_key(|v| std::cmp::Reverse(v.len()));
        all.dedup();
        Redactor { values: all }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Every secret value container `id` holds, old ones included until an apply replaces them:
/// each string in its mounted secrets file, and the values of its environment variables
/// named in `names` (secrets that travel as environment variables).
pub async fn held_values<E: crate::engine::Engine>(
    engine: &E,
    id: &str,
    names: &[String],
) -> Result<Vec<zeroize::Zeroizing<String>>, crate::engine::EngineError> {
    let mut out = Vec::new();
    for var in engine.container_env(id).await? {
        if let Some((name, value)) = var.split_once('=')
            && names.iter().any(|n| n == name)
        {
            out.push(zeroize::Zeroizing::new(value.to_string()));
        }
    }
    let mut tar = zeroize::Zeroizing::new(Vec::new());
    match engine
        .download_archive(id, crate::render::SECRETS_FILE, &mut *tar)
        .await
    {
        Ok(_) => out.extend(strings_in_tar(&tar)),
        // No secrets file (an image that reads none): nothing more to redact.
        Err(crate::engine::EngineError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Every JSON string in the files of a tar archive.
fn strings_in_tar(tar: &[u8]) -> Vec<zeroize::Zeroizing<String>> {
    fn walk(v: &serde_json::Value, out: &mut Vec<zeroize::Zeroizing<String>>) {
        match v {
            serde_json::Value::String(s) => out.push(zeroize::Zeroizing::new(s.clone())),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return out;
    };
    for mut e in entries.flatten() {
        let mut text = zeroize::Zeroizing::new(String::new());
        if std::io::Read::read_to_string(&mut e, &mut text).is_ok()
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            walk(&v, &mut out);
        }
    }
    out
}

/// A [`Redactor`] over a stream of chunks: only whole lines leave it.
pub struct LineRedactor {
    redactor: Redactor,
    pending: Vec<u8>,
}

impl LineRedactor {
    pub fn new(redactor: Redactor) -> Self {
        LineRedactor {
            redactor,
            pending: Vec::new(),
        }
    }

    /// The complete lines `chunk` finishes, redacted.
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let Some(cut) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return String::new();
        };
        let rest = self.pending.split_off(cut + 1);
        let done = std::mem::replace(&mut self.pending, rest);
        self.redactor.redact(&String::from_utf8_lossy(&done))
    }

    /// What is left at the end of the stream, redacted.
    pub fn finish(&mut self) -> String {
        let done = std::mem::take(&mut self.pending);
        self.redactor.redact(&String::from_utf8_lossy(&done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_a_secrets_file_in_a_tar_is_a_value_to_hide() {
        let mut b = tar::Builder::new(Vec::new());
        let body =
            br#"{"OPENCLAW_GATEWAY_TOKEN":"old-token-1","nested":{"k":["deep-value"]},"n":3}"#;
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, "secrets.json", &body[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut got: Vec<String> = strings_in_tar(&tar).iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, ["deep-value", "old-token-1"]);
    }

    #[test]
    fn values_and_their_escaped_forms_are_redacted_even_across_chunks() {
        let secret = "12345:tok/en+value";
        let r = Redactor::new([secret, "abc"]);
        assert_eq!(
            r.redact("token=12345:tok/en+value, short abc"),
            "token=<redacted>, short abc"
        );
        assert_eq!(
            r.redact("GET /bot12345%3Atok%2Fen%2Bvalue/getUpdates"),
            "GET /bot<redacted>/getUpdates"
        );
        let mut lr = LineRedactor::new(Redactor::new([secret]));
        let text = format!("first line\nthe token {secret} here\nlast {secret}");
        let mut out = String::new();
        for chunk in text.as_bytes().chunks(5) {
            out.push_str(&lr.push(chunk));
        }
        out.push_str(&lr.finish());
        assert_eq!(
            out,
            "first line\nthe token <redacted> here\nlast <redacted>"
        );
        assert!(!out.contains("tok/en"));
    }
}
