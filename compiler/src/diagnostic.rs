//! Mistakes in a model file, each with its place, gathered so that all of them
//! are reported at once.

use serde_saphyr::Location;

/// One mistake: where it is, which layer or key it concerns, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line; 0 when the place is unknown.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The YAML path, e.g. `modules[2].residual`; empty for the whole file.
    pub path: String,
    /// What is wrong, with the shapes involved.
    pub message: String,
}

impl Diagnostic {
    pub fn at(location: Location, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            line: location.line() as u32,
            column: location.column() as u32,
            path: path.into(),
            message: message.into(),
        }
    }

    /// `models/x.yaml:LINE:COL: path: message`, with the path the user wrote.
    pub fn render(&self, file: &str) -> String {
        let place = if self.line == 0 {
            file.to_string()
        } else {
            format!("{file}:{}:{}", self.line, self.column)
        };
        if self.path.is_empty() {
            format!("{place}: {}", self.message)
        } else {
            format!("{place}: {}: {}", self.path, self.message)
        }
    }
}

/// The mistakes found so far, in file order once sorted.
#[derive(Debug, Default)]
pub struct Diagnostics {
    found: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.found.push(diagnostic);
    }

    pub fn error(
        &mut self,
        location: Location,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Diagnostic::at(location, path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// All mistakes, sorted by place so the report reads top to bottom.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|d| (d.line, d.column));
        self.found.dedup();
        self.found
    }
}
