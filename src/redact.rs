//! URLs as mtp shows them: a URL may carry credentials (`https://user:password@host/`,
//! `?token=...`), and every URL mtp prints or logs (webhooks, the fleet repository, Docker
//! hosts' endpoints) goes through [`url`] first.

/// What replaces a credential in a shown URL.
pub const HIDDEN: &str = "***";

/// `raw` with its credentials hidden: the password of the userinfo (and the user name too,
/// except for `ssh://`, where it is an account name and no credential), every query value and
/// the fragment. Scheme, host, port and path stay, so the URL is still recognisable.
///
/// `https://bot:pw@hooks.example/x?token=abc&v=1#k` -> `https://***@hooks.example/x?token=***&v=***#***`
pub fn url(raw: &str) -> String {
    replace_credentials(raw, |_| HIDDEN.to_string())
}

/// `raw` with each credential of [`url`] masked by as many `*` as it has bytes: what a source
/// snippet shows, where the positions of everything else must not move.
pub fn mask_url(raw: &str) -> String {
    replace_credentials(raw, |c| "*".repeat(c.len()))
}

fn replace_credentials(raw: &str, hide: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut at = 0;
    for r in credentials(raw) {
        out.push_str(&raw[at..r.start]);
        out.push_str(&hide(&raw[r.clone()]));
        at = r.end;
    }
    out.push_str(&raw[at..]);
    out
}

/// The byte ranges of `raw` that may be credentials, in order: the userinfo (or only its
/// password, for `ssh://`), each query value (a bare query item whole), the fragment.
fn credentials(raw: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let (body, fragment) = match raw.find('#') {
        Some(i) => (&raw[..i], Some(i + 1..raw.len())),
        None => (raw, None),
    };
    let (head, query) = match body.find('?') {
        Some(i) => (&body[..i], Some(i + 1)),
        None => (body, None),
    };
    if let Some(s) = head.find("://") {
        let scheme = &head[..s];
        let start = s + 3;
        let end = head[start..].find('/').map_or(head.len(), |i| start + i);
        if let Some(at) = head[start..end].rfind('@') {
            let userinfo = start..start + at;
            match head[userinfo.clone()].find(':') {
                None if scheme.eq_ignore_ascii_case("ssh") => {}
                Some(colon) if scheme.eq_ignore_ascii_case("ssh") => {
                    found.push(userinfo.start + colon + 1..userinfo.end)
                }
                _ => found.push(userinfo),
            }
        }
    }
    if let Some(q) = query {
        let mut from = q;
        for item in body[q..].split('&') {
            let value = match item.find('=') {
                Some(eq) => from + eq + 1..from + item.len(),
                None => from..from + item.len(),
            };
            if !value.is_empty() {
                found.push(value);
            }
            from += item.len() + 1;
        }
    }
    found.extend(fragment.filter(|f| !f.is_empty()));
    found
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn credentials_in_urls_are_hidden_and_the_rest_stays() {
        for (raw, shown) in [
            (
                "https://bot:pw@hooks.example/x?token=abc&v=1#k",
                "https://***@hooks.example/x?token=***&v=***#***",
            ),
            (
                "http://user:PASSWORD@127.0.0.1:9/h",
                "http://***@127.0.0.1:9/h",
            ),
            (
                "https://ghp_TOKEN@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            ("https://hooks.example/x", "https://hooks.example/x"),
            ("https://h/p?secrettoken", "https://h/p?***"),
            ("ssh://deploy@host:22", "ssh://deploy@host:22"),
            ("ssh://deploy:pw@host", "ssh://deploy:***@host"),
            ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
            ("tcp://10.0.0.2:2376", "tcp://10.0.0.2:2376"),
            ("/srv/fleet-repo", "/srv/fleet-repo"),
            ("https://h/a@b?x=1", "https://h/a@b?x=***"),
            ("https://h/p?a=&b=2", "https://h/p?a=&b=***"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn a_masked_url_keeps_its_length() {
        let raw = "http://u:pässword@h:1/p?token=abc#frag";
        let masked = super::mask_url(raw);
        assert_eq!(masked.len(), raw.len());
        assert_eq!(masked, "http://***********@h:1/p?token=***#****");
    }
}
