//! Go's `url.QueryEscape` and `url.QueryUnescape`, which the upstream protocol uses for job
//! names in paths (upstream-compat.md §11.1): a space is `+`, everything but `A-Za-z0-9-_.~`
//! is `%XX`, and decoding turns `+` back into a space.

/// Escape `text` as a query component.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            other => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(other >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(other & 15)]));
            }
        }
    }
    out
}

/// Why a component could not be decoded (Go's `url.EscapeError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL escape {0:?}")]
pub struct EscapeError(pub String);

/// Decode a query component: `%XX` and `+` as a space. The result must be UTF-8.
pub fn query_unescape(text: &str) -> Result<String, EscapeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        match bytes[position] {
            b'%' => {
                let hex = bytes.get(position + 1..position + 3);
                let decoded = hex.and_then(|pair| {
                    let high = (pair[0] as char).to_digit(16)?;
                    let low = (pair[1] as char).to_digit(16)?;
                    Some((high * 16 + low) as u8)
                });
                match decoded {
                    Some(byte) => out.push(byte),
                    None => {
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
    String::from_utf8(out).map_err(|_| EscapeError(text.to_string()))
}

/// The value of `name` in a raw query string, if it appears (first occurrence), decoded;
/// undecodable values count as absent.
pub fn query_value(raw_query: Option<&str>, name: &str) -> Option<String> {
    raw_query?
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (query_unescape(key).ok()? == name).then(|| query_unescape(value).ok())?
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("serviceMonitor/ns/app/0"), "serviceMonitor%2Fns%2Fapp%2F0");
        assert_eq!(query_escape("my job"), "my+job");
        assert_eq!(query_escape("a~b-c_d.e"), "a~b-c_d.e");
        assert_eq!(query_escape("é"), "%C3%A9");
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
        assert!(query_unescape("%ff").is_err());
        for job in ["a/b c", "x+y", "100%", "ünï"] {
            assert_eq!(query_unescape(&query_escape(job)).unwrap(), job);
        }
    }

    #[test]
    fn finds_query_values() {
        assert_eq!(
            query_value(Some("a=1&collector_id=c+1"), "collector_id").as_deref(),
            Some("c 1")
        );
        assert_eq!(query_value(Some("collector_id="), "collector_id").as_deref(), Some(""));
        assert_eq!(query_value(None, "collector_id"), None);
        assert_eq!(query_value(Some("x=1"), "collector_id"), None);
    }
}
