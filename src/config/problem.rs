//! What is wrong with a configuration file, and where: [`Problem`]s are collected, never
//! thrown, so that one run of the loader (or of `check-config`) lists every problem of a
//! file at once (I8, docs/architecture.md).

use std::fmt;

/// One problem (or warning) in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as it was named to the loader.
    pub file: String,
    /// 1-based; `None` when the problem is about something absent from the file, or comes
    /// from the environment or the command line.
    pub line: Option<usize>,
    /// Where in the document: `config.scrape_configs[2].relabel_configs[0].regex`.
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_path = if self.key_path.is_empty() {
            "(document)"
        } else {
            &self.key_path
        };
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.file, line, key_path, self.message),
            None => write!(f, "{}: {}: {}", self.file, key_path, self.message),
        }
    }
}

/// A path of keys and list indexes from the document root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(String);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(String::new())
    }

    pub fn key(&self, key: &str) -> Self {
        if self.0.is_empty() {
            KeyPath(key.to_string())
        } else {
            KeyPath(format!("{}.{key}", self.0))
        }
    }

    pub fn index(&self, index: usize) -> Self {
        KeyPath(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The problems and warnings found so far in one file.
#[derive(Debug, Clone)]
pub struct Report {
    file: String,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    pub fn new(file: impl Into<String>) -> Self {
        Report {
            file: file.into(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    fn problem(&self, path: &KeyPath, line: Option<usize>, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line,
            key_path: path.to_string(),
            message: message.into(),
        }
    }

    pub fn error(&mut self, path: &KeyPath, line: Option<usize>, message: impl Into<String>) {
        let problem = self.problem(path, line, message);
        self.errors.push(problem);
    }

    pub fn warn(&mut self, path: &KeyPath, line: Option<usize>, message: impl Into<String>) {
        let problem = self.problem(path, line, message);
        self.warnings.push(problem);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}
