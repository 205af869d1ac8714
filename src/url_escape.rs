//! Go's `url.QueryEscape`, `url.QueryUnescape` and `URL.Query()`, which the upstream
//! protocol uses for job names in paths (docs/compatibility.md, "Job names in URLs") and for
//! query parameters: a space is `+`, everything but `A-Za-z0-9-_.~` is `%XX`, and decoding
//! turns `+` back into a space.

/// Escape `text` as a query component.
pub fn query_escape(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => {
                out.push('%');
                out.push(char::from(HEX[usize::from(other >> 4)]));
                out.push(char::from(HEX[usize::from(other & 15)]));
            }
        }
    }
    out
}

/// Why a component could not be decoded (Go's `url.EscapeError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL escape {0:?}")]
pub struct EscapeError(pub String);

/// The bytes of a query component: `%XX` decoded and `+` as a space.
fn unescape_bytes(text: &str) -> Result<Vec<u8>, EscapeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'%' => {
                let digit = |offset: usize| bytes.get(position + offset).and_then(|d| char::from(*d).to_digit(16));
                match (digit(1), digit(2)) {
                    (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
                    _ => {
                        let end = (position + 3).min(bytes.len());
                        return Err(EscapeError(String::from_utf8_lossy(&bytes[position..end]).into_owned()));
                    }
                }
                position += 3;
            }
            b'+' => {
                out.push(b' ');
                position += 1;
            }
            other => {
                out.push(other);
                position += 1;
            }
        }
    }
    Ok(out)
}

/// Decode a query component strictly: the result must be UTF-8 (a job name).
pub fn query_unescape(text: &str) -> Result<String, EscapeError> {
    String::from_utf8(unescape_bytes(text)?).map_err(|_| EscapeError(text.to_string()))
}

/// Decode a query component; `None` on a malformed `%` escape. Bytes that are not UTF-8
/// become U+FFFD: Rust strings cannot hold them, and such a value names nothing anyway.
pub fn query_unescape_lossy(text: &str) -> Option<String> {
    unescape_bytes(text)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Every value of `name` in `raw_query`, in order, like Go's `URL.Query()`: pairs split on
/// `&`, a pair containing `;` or failing to decode is skipped.
pub fn query_values(raw_query: Option<&str>, name: &str) -> Vec<String> {
    let Some(raw_query) = raw_query else {
        return Vec::new();
    };
    raw_query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = query_unescape_lossy(key)?;
            let value = query_unescape_lossy(value)?;
            (key == name).then_some(value)
        })
        .collect()
}

/// The first value of `name` in `raw_query` (Go's `Query().Get`, but telling absent from
/// empty).
pub fn query_value(raw_query: Option<&str>, name: &str) -> Option<String> {
    query_values(raw_query, name).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("serviceMonitor/ns/app/0"), "serviceMonitor%2Fns%2Fapp%2F0");
        assert_eq!(query_escape("my job"), "my+job");
        assert_eq!(query_escape("a b&c=d+e~f_g.h-i"), "a+b%26c%3Dd%2Be~f_g.h-i");
        assert_eq!(query_escape("ü<>"), "%C3%BC%3C%3E");
    }

    #[test]
    fn unescapes_like_go() {
        assert_eq!(
            query_unescape("serviceMonitor%2Fns%2Fapp%2F0").unwrap(),
            "serviceMonitor/ns/app/0"
        );
        assert_eq!(query_unescape("my+job").unwrap(), "my job");
        assert_eq!(query_unescape("a%2bb").unwrap(), "a+b");
        assert!(query_unescape("%zz").is_err());
        assert!(query_unescape("abc%2").is_err());
        assert!(query_unescape("100%").is_err());
        assert!(query_unescape("%ff").is_err());
        assert_eq!(query_unescape_lossy("%FF").as_deref(), Some("\u{FFFD}"));
        assert_eq!(query_unescape_lossy("a+b%2Fc%2f%C3%BC").as_deref(), Some("a b/c/ü"));
        for job in ["a/b c", "x+y", "100%", "ünï", "x/y z&ü"] {
            assert_eq!(query_unescape(&query_escape(job)).unwrap(), job);
        }
    }

    #[test]
    fn collects_values_like_go_url_query() {
        let query = Some("job_id=a&x=1&job_id=b+c&job_id&=v&job_id=%zz&job_id=d;e&&job%5Fid=f");
        assert_eq!(query_values(query, "job_id"), ["a", "b c", "", "f"]);
        assert_eq!(query_values(query, "x"), ["1"]);
        assert_eq!(query_values(query, ""), ["v"]);
        assert!(query_values(None, "job_id").is_empty());
        assert!(query_values(Some(""), "job_id").is_empty());
        assert_eq!(
            query_value(Some("a=1&collector_id=c+1"), "collector_id").as_deref(),
            Some("c 1")
        );
        assert_eq!(query_value(Some("collector_id="), "collector_id").as_deref(), Some(""));
        assert_eq!(query_value(Some("x=1"), "collector_id"), None);
    }
}
