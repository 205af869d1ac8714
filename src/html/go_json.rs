//! Pretty JSON as upstream shows a scrape config: decoded into Go's `any` and written back
//! with `MarshalIndent(value, "", "  ")`. That means keys sorted, numbers as float64, and
//! `<`, `>`, `&`, U+2028 and U+2029 escaped inside strings.

use serde_json::Value;

/// `value` written the way upstream's scrape-config page shows it.
pub fn to_indented(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => match number.as_f64() {
            Some(float) => push_float(out, float),
            None => out.push_str(&number.to_string()),
        },
        Value::String(text) => push_string(out, text),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                push_newline(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            push_newline(out, depth);
            out.push(']');
        }
        Value::Object(fields) => {
            if fields.is_empty() {
                out.push_str("{}");
                return;
            }
            // Go sorts map keys by their bytes, whatever order the map kept.
            let mut sorted: Vec<_> = fields.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, field)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                push_newline(out, depth + 1);
                push_string(out, key);
                out.push_str(": ");
                write_value(out, field, depth + 1);
            }
            push_newline(out, depth);
            out.push('}');
        }
    }
}

fn push_newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Go's float64 encoding: shortest round-trip digits, plain notation unless the magnitude is
/// below 1e-6 or at least 1e21, then an exponent with a sign and no padding (`1e+21`,
/// `1e-7`). Integers past 2^53 therefore lose precision, as upstream's do.
fn push_float(out: &mut String, float: f64) {
    let magnitude = float.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        let formatted = format!("{float:e}");
        match formatted.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                out.push_str(mantissa);
                out.push_str("e+");
                out.push_str(exponent);
            }
            _ => out.push_str(&formatted),
        }
    } else {
        out.push_str(&float.to_string());
    }
}

/// A JSON string with Go's escapes (HTML-safe, control characters other than `\n`, `\r`
/// and `\t` as `\u00XX`).
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => push_unicode_escape(out, character),
            control if u32::from(control) < 0x20 => push_unicode_escape(out, control),
            other => out.push(other),
        }
    }
    out.push('"');
}

fn push_unicode_escape(out: &mut String, character: char) {
    out.push_str(&format!("\\u{:04x}", u32::from(character)));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn indents_like_marshal_indent_with_sorted_keys() {
        let value = json!({"b": [1, "x"], "a": {}, "c": [], "d": {"z": null, "y": true}});
        assert_eq!(
            to_indented(&value),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"x\"\n  ],\n  \"c\": [],\n  \"d\": {\n    \"y\": true,\n    \"z\": null\n  }\n}"
        );
    }

    #[test]
    fn numbers_are_float64() {
        let cases = [
            (json!(30), "30"),
            (json!(-2), "-2"),
            (json!(1.5), "1.5"),
            (json!(2.0), "2"),
            (json!(0.000001), "0.000001"),
            (json!(0.0000001), "1e-7"),
            (json!(1e21), "1e+21"),
            (json!(123456789012345680000.0), "123456789012345680000"),
            (json!(u64::MAX), "18446744073709552000"),
        ];
        for (value, expected) in cases {
            assert_eq!(to_indented(&value), expected, "{value}");
        }
    }

    #[test]
    fn strings_are_escaped_like_go() {
        let value = json!("a<b>&\"\\\n\r\t\u{1}\u{8}\u{2028}ü");
        assert_eq!(
            to_indented(&value),
            "\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\r\\t\\u0001\\u0008\\u2028ü\""
        );
    }
}
