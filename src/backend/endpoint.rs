//! The URLs mkplan sends requests to (an `http://` backend, the TKE endpoint, the IAM
//! endpoint) and what may travel to each.
//!
//! A credential (a bearer token, an API key, the token it buys, key parts) crosses the network
//! only inside TLS. Over plain `http://` it goes only to this machine, named as `localhost` or
//! as a loopback address (`127.0.0.0/8`, `[::1]`). A host name that merely resolves to loopback
//! does not count: resolving it asks /etc/hosts or a DNS server, either of which may answer with
//! another machine, and the answer may change between the check and the connection. The check
//! runs when the backend is opened, before the first request.
//!
//! A URL carries no user name, password, query or fragment: it is shown in plans, the journal,
//! the audit trail and messages, so a secret in it would be written everywhere.

use reqwest::Url;

use super::BackendError;

/// Parses the URL of `role` ("backend", "TKE endpoint", …), refusing what it must not carry.
pub fn parse(role: &str, text: &str) -> Result<Url, BackendError> {
    let bad = |why: &str| BackendError::Endpoint(format!("{role} {}: {why}", redacted(text)));
    let authority = text.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '\\', '?', '#']).next().unwrap_or_default()
    });
    let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() || authority.contains('@') {
        return Err(bad(
            "a URL here carries no user name or password (it is shown in plans, the journal, the audit trail and messages). Give the token in MKPLAN_TOKEN (IBMCLOUD_IAM_TOKEN or IBMCLOUD_API_KEY for tke:)",
        ));
    }
    if !matches!(url.scheme(), "http" | "https")
        || url.cannot_be_a_base()
        || url.host_str().is_none_or(str::is_empty)
    {
        return Err(bad(
            "give it as https://HOST[:PORT] (or http://localhost:PORT for a server on this machine)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "a URL here carries no query or fragment (`?…`, `#…`): give the base URL alone",
        ));
    }
    Ok(url)
}

/// `localhost`, or a loopback address written as such. Nothing is resolved.
pub fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Refuses plain `http://` to a host other than this machine when `carried` (what would be
/// sent there, named as the operator set it: `MKPLAN_TOKEN`, `key parts`) is not empty.
pub fn refuse_clear_text(role: &str, url: &Url, carried: &[&str]) -> Result<(), BackendError> {
    if url.scheme() != "http" || is_loopback(url) || carried.is_empty() {
        return Ok(());
    }
    let mut tls = url.clone();
    tls.set_scheme("https")
        .expect("http and https are both special schemes");
    Err(BackendError::Endpoint(format!(
        "{role} {}: {} would cross the network in clear text (plain http:// to a host that is not this machine). Nothing was sent. Use {} (TLS), or reach a server on this machine as localhost, 127.0.0.1 or [::1]: any other host name counts as another machine, whatever it resolves to",
        shown(url),
        listed(carried),
        shown(&tls)
    )))
}

/// The URL as messages and plans show it: without the trailing slash.
pub fn shown(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// `text` with everything between `://` and the last `@` hidden, for messages about a URL
/// that may hold a password (even one that does not parse).
pub fn redacted(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    let start = text[..at].find("://").map_or(0, |i| i + 3);
    format!("{}…{}", &text[..start], &text[at..])
}

/// `a`, `a and b`, `a, b and c`.
fn listed(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        parse("backend", text).unwrap()
    }

    #[test]
    fn only_localhost_and_loopback_literals_are_this_machine() {
        for here in [
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://127.0.0.1:1",
            "http://127.5.6.7",
            "http://0x7f.1",
            "http://[::1]:8080",
        ] {
            assert!(is_loopback(&url(here)), "{here}");
        }
        for elsewhere in [
            "http://localhost.:8080",
            "http://localhost.localdomain",
            "http://ip6-localhost",
            "http://vm:8080",
            "http://me.localhost",
            "http://0.0.0.0",
            "http://[::ffff:127.0.0.1]",
            "http://10.0.0.1",
        ] {
            assert!(!is_loopback(&url(elsewhere)), "{elsewhere}");
        }
    }

    #[test]
    fn clear_text_to_another_machine_is_refused_only_with_something_to_protect() {
        let remote = url("http://vm:8080/");
        let refused = refuse_clear_text("backend", &remote, &["MKPLAN_TOKEN", "key parts"])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("backend http://vm:8080:"), "{refused}");
        assert!(refused.contains("MKPLAN_TOKEN and key parts"), "{refused}");
        assert!(refused.contains("https://vm:8080"), "{refused}");
        assert!(refused.contains("Nothing was sent"), "{refused}");
        assert!(refuse_clear_text("backend", &remote, &[]).is_ok());
        let carried = ["MKPLAN_TOKEN"];
        for allowed in ["https://vm:8080", "http://localhost:1", "http://[::1]:1"] {
            assert!(
                refuse_clear_text("backend", &url(allowed), &carried).is_ok(),
                "{allowed}"
            );
        }
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_showing_it() {
        for text in [
            "http://user:s3cret@127.0.0.1:1",
            "https://s3cret@example.com",
            "http://user:s3/cret@example.com",
            "http://user:s3cret@exa mple.com",
            "http://@example.com",
        ] {
            let refused = parse("TKE endpoint", text).unwrap_err().to_string();
            assert!(!refused.contains("s3"), "{refused}");
            assert!(refused.starts_with("TKE endpoint http"), "{refused}");
            assert!(refused.contains("://…@"), "{refused}");
        }
        for text in ["https://example.com/?token=x", "https://example.com/#x"] {
            assert!(parse("backend", text).is_err(), "{text}");
        }
        for text in ["ftp://example.com", "https://", "example.com"] {
            assert!(parse("backend", text).is_err(), "{text}");
        }
        assert_eq!(redacted("no secret"), "no secret");
        assert_eq!(redacted("u:p@host"), "…@host");
    }
}
