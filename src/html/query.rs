//! Query strings as Go's `net/url` reads and writes them: `URL.Query()` (which drops pairs it
//! cannot decode) and `url.QueryEscape` for the parameters of generated links.

/// Every value of `name` in `raw_query`, in order, decoded like Go's `url.ParseQuery`: pairs
/// split on `&`, a pair containing `;` or failing to decode is skipped, `+` is a space and
/// `%XX` a byte.
pub fn values(raw_query: Option<&str>, name: &str) -> Vec<String> {
    let Some(raw_query) = raw_query else {
        return Vec::new();
    };
    raw_query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = unescape(key)?;
            let value = unescape(value)?;
            (key == name).then_some(value)
        })
        .collect()
}

/// Decode one query component (`url.QueryUnescape`); `None` on a malformed `%` escape.
/// Bytes that are not UTF-8 become U+FFFD: Rust strings cannot hold them, and such a value
/// cannot name a job or collector anyway.
pub fn unescape(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let high = hex_value(*bytes.get(index + 1)?)?;
                let low = hex_value(*bytes.get(index + 2)?)?;
                decoded.push(high << 4 | low);
                index += 3;
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            other => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// Escape `value` for a query component (`url.QueryEscape`): letters, digits and `-_.~`
/// stay, a space becomes `+`, every other byte `%XX` in upper case.
pub fn escape(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut escaped = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => escaped.push(char::from(byte)),
            b' ' => escaped.push('+'),
            _ => {
                escaped.push('%');
                escaped.push(char::from(HEX[usize::from(byte >> 4)]));
                escaped.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_components() {
        assert_eq!(unescape("a+b%2Fc%2f%C3%BC").as_deref(), Some("a b/c/ü"));
        assert_eq!(unescape("%zz"), None);
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("100%"), None);
        assert_eq!(unescape("%FF").as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn collects_values_like_go_url_query() {
        let query = Some("job_id=a&x=1&job_id=b+c&job_id&=v&job_id=%zz&job_id=d;e&&job%5Fid=f");
        assert_eq!(values(query, "job_id"), ["a", "b c", "", "f"]);
        assert_eq!(values(query, "x"), ["1"]);
        assert_eq!(values(query, ""), ["v"]);
        assert!(values(None, "job_id").is_empty());
        assert!(values(Some(""), "job_id").is_empty());
    }

    #[test]
    fn escapes_like_go_query_escape() {
        assert_eq!(escape("serviceMonitor/ns/app/0"), "serviceMonitor%2Fns%2Fapp%2F0");
        assert_eq!(escape("a b&c=d+e~f_g.h-i"), "a+b%26c%3Dd%2Be~f_g.h-i");
        assert_eq!(escape("ü<>"), "%C3%BC%3C%3E");
        assert_eq!(unescape(&escape("x/y z&ü")).as_deref(), Some("x/y z&ü"));
    }
}
