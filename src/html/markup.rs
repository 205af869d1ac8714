//! The markup of upstream's HTML templates (`page_header.html`, `properties_table.html`,
//! `page_footer.html`, `bad_request.html`, `not_found.html`), byte for byte, and the escaping
//! Go's `html/template` applies to every value put into them.

use std::fmt::Write;

/// Escape `text` for an HTML text node or a quoted attribute value, as `html/template` does
/// in both places: its replacement table also covers `'`, `"` and `+`, and turns NUL into
/// U+FFFD.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    push_escaped(&mut escaped, text);
    escaped
}

fn push_escaped(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '+' => out.push_str("&#43;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
}

/// One table cell; text is escaped when written.
pub enum Cell {
    Text(String),
    /// A link; `href` must already be a URL (query values escaped), it is HTML-escaped only.
    Link {
        href: String,
        text: String,
    },
    Preformatted(String),
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn link(href: impl Into<String>, text: impl Into<String>) -> Self {
        Self::Link {
            href: href.into(),
            text: text.into(),
        }
    }
}

/// A page being written.
#[derive(Default)]
pub struct Page {
    body: String,
}

impl Page {
    /// A page starting with the header: title, heading and the navigation list.
    pub fn with_header(title: &str) -> Self {
        let mut page = Self::default();
        let title = escape(title);
        // `write!` into a String cannot fail.
        let _ = write!(
            page.body,
            "<!DOCTYPE html>\n\
             <html lang=\"en\"><head>\n    \
             <meta charset=\"utf-8\">\n    \
             <title>{title}</title>\n    \
             <link rel=\"shortcut icon\" href=\"https://opentelemetry.io/favicons/favicon.ico\"/>\n\
             </head>\n\
             <body>\n\
             <h1>{title}</h1>\n\
             <nav>\n    \
             <ul>\n        \
             <li><a href=\"/\">Home</a></li>\n        \
             <li><a href=\"/debug/scrape_configs\">Scrape Configs</a></li>\n        \
             <li><a href=\"/debug/jobs\">Jobs</a></li>\n        \
             <li><a href=\"/debug/targets\">Targets</a></li>\n    \
             </ul>\n\
             </nav>\n"
        );
        page
    }

    /// Append a table; rows alternate starting with a shaded one, as upstream's `even` test
    /// on the zero-based row index does.
    pub fn table(&mut self, headers: &[&str], rows: impl IntoIterator<Item = Vec<Cell>>) {
        let out = &mut self.body;
        out.push_str("<table>\n    <thead>");
        for header in headers {
            out.push_str("\n    <td>\n        ");
            push_escaped(out, header);
            out.push_str("\n    </td>");
        }
        out.push_str("\n    </thead>");
        for (index, row) in rows.into_iter().enumerate() {
            out.push_str(if index % 2 == 0 {
                "\n    <tr style=\"background: #eee\">"
            } else {
                "\n    <tr >"
            });
            for cell in row {
                out.push_str("\n        <td style=\"vertical-align: top;\">\n            ");
                match cell {
                    Cell::Text(text) => push_escaped(out, &text),
                    Cell::Link { href, text } => {
                        out.push_str("<a href=\"");
                        push_escaped(out, &href);
                        out.push_str("\">");
                        push_escaped(out, &text);
                        out.push_str("</a>");
                    }
                    Cell::Preformatted(text) => {
                        out.push_str("<pre>");
                        push_escaped(out, &text);
                        out.push_str("</pre>");
                    }
                }
                out.push_str("\n        </td>");
            }
            out.push_str("\n    </tr>");
        }
        out.push_str("\n</table>\n");
    }

    /// Append the footer and return the page.
    pub fn finish(mut self) -> String {
        self.body.push_str("</body>\n</html>");
        self.body
    }

    /// Append upstream's bad-request page (a complete document of its own).
    pub fn bad_request(&mut self, error: &str, example: &str) {
        let out = &mut self.body;
        out.push_str("<html>\n<body>\n<h1>Bad Request</h1>\n<p>");
        push_escaped(out, error);
        out.push_str("</p>\n<p>Example: ");
        push_escaped(out, example);
        out.push_str("</p>\n</body>\n</html>");
    }

    /// Append upstream's not-found page (a complete document of its own).
    pub fn not_found(&mut self, resource_type: &str, resource_name: &str) {
        let out = &mut self.body;
        out.push_str("<html>\n<body>\n<h1>Unknown ");
        push_escaped(out, resource_type);
        out.push_str(": ");
        push_escaped(out, resource_name);
        out.push_str("</h1>\n</body>\n</html>");
    }

    /// The text written so far, without a footer (for the error pages).
    pub fn into_body(self) -> String {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_html_template() {
        assert_eq!(
            escape("<a href=\"x\">&'+\0"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&#43;\u{FFFD}"
        );
        assert_eq!(escape("plain-text_ü/%2F"), "plain-text_ü/%2F");
    }

    #[test]
    fn an_empty_table_has_only_its_head() {
        let mut page = Page::default();
        page.table(&["A", "B"], Vec::new());
        assert_eq!(
            page.into_body(),
            "<table>\n    <thead>\n    <td>\n        A\n    </td>\n    <td>\n        B\n    </td>\n    </thead>\n</table>\n"
        );
    }

    #[test]
    fn rows_alternate_shading_and_cells_render_by_kind() {
        let mut page = Page::default();
        page.table(
            &["X"],
            vec![
                vec![Cell::link("/a?b=c%2Fd", "<x>")],
                vec![Cell::Preformatted("{\n  \"a\": 1\n}".into())],
                vec![Cell::text("")],
            ],
        );
        let body = page.into_body();
        let expected_rows = concat!(
            "\n    <tr style=\"background: #eee\">\n        <td style=\"vertical-align: top;\">\n",
            "            <a href=\"/a?b=c%2Fd\">&lt;x&gt;</a>\n        </td>\n    </tr>",
            "\n    <tr >\n        <td style=\"vertical-align: top;\">\n",
            "            <pre>{\n  &#34;a&#34;: 1\n}</pre>\n        </td>\n    </tr>",
            "\n    <tr style=\"background: #eee\">\n        <td style=\"vertical-align: top;\">\n",
            "            \n        </td>\n    </tr>\n</table>\n",
        );
        assert!(body.ends_with(expected_rows), "{body}");
    }
}
