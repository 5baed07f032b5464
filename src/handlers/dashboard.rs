//! `GET /dashboard`: the metrics dashboard, one self-contained page (`src/dashboard.html`:
//! inline CSS and JS, no external resources) that reads `/metrics` and `/metrics/series`
//! and draws them. The page holds no data, so it is served without authentication; its
//! data calls send the API key typed into it (kept in the browser's session storage).

use worker::Response;

/// The page, embedded in the worker.
const PAGE: &str = include_str!("../dashboard.html");

/// Only the page's own inline style and script (by hash), and fetches to this origin.
/// `dashboard_csp_hashes_match_the_page` keeps the hashes in step with the page.
const CSP: &str = concat!(
    "default-src 'none'; ",
    "script-src 'sha256-ZkO2cnOBLCXMO3n1kD/bNyPN3MyML+XrITocvPw5svM='; ",
    "style-src 'sha256-+Hr+liZNCtC0SE3Gq5GMRMyesdY4HCWzCfnx4eavqYo='; ",
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
);

/// How the page begins; the flag that keys are required goes into its `<html>` tag.
const HEAD: &str = "<!doctype html><html";

/// Serves the page. `keys_required`: the gateway checks API keys, so the page asks for
/// one before its first data call (rather than learning it from a 401).
pub fn handle(keys_required: bool) -> worker::Result<Response> {
    let mut body = Vec::with_capacity(PAGE.len() + 10);
    body.extend_from_slice(HEAD.as_bytes());
    if keys_required {
        body.extend_from_slice(b" data-auth");
    }
    body.extend_from_slice(&PAGE.as_bytes()[HEAD.len()..]);
    let mut response = Response::from_body(worker::ResponseBody::Body(body))?;
    let headers = response.headers_mut();
    headers.set("content-type", "text/html; charset=utf-8")?;
    headers.set("content-security-policy", CSP)?;
    headers.set("cache-control", "no-cache")?;
    headers.set("x-content-type-options", "nosniff")?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Standard base64 with padding (CSP hash sources).
    fn base64(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The text between `<tag>` and `</tag>` (the one element of that kind in the page).
    fn element<'a>(tag: &str, page: &'a str) -> &'a str {
        let open = format!("<{tag}>");
        let start = page.find(&open).map(|i| i + open.len()).unwrap_or(0);
        let end = page.find(&format!("</{tag}>")).unwrap_or(0);
        assert_eq!(page.matches(&open).count(), 1, "one <{tag}> in the page");
        &page[start..end]
    }

    #[test]
    fn the_page_begins_with_its_html_tag() {
        assert!(PAGE.starts_with(HEAD));
    }

    #[test]
    fn base64_of_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn dashboard_csp_hashes_match_the_page() {
        for tag in ["script", "style"] {
            let hash = base64(&Sha256::digest(element(tag, PAGE).as_bytes()));
            let source = format!("{tag}-src 'sha256-{hash}'");
            assert!(CSP.contains(&source), "the CSP must allow {source}");
        }
    }

    #[test]
    fn the_page_is_self_contained_and_small() {
        // Nothing loaded from elsewhere: no URLs but the gateway's own paths.
        assert!(!PAGE.contains("http:") && !PAGE.contains("https:") && !PAGE.contains("//cdn"));
        assert!(!PAGE.contains(" src="), "no external scripts or images");
        // Every byte counts in the worker bundle's budget.
        assert!(PAGE.len() <= 9 * 1024, "the page is {} bytes", PAGE.len());
    }
}
