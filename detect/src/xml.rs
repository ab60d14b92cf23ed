//! Reading OpenCV `FileStorage` XML with element paths for error messages.
//!
//! OpenCV writes a cascade as nested elements whose sequence items are all
//! named `_`. Every element read here carries its path from the top-level
//! node down, with sequence items numbered from 0
//! (`cascade/stages/_[3]/weakClassifiers/_[2]/internalNodes`), so that an
//! error can say exactly where a file is broken.

use roxmltree::Node;

use super::CascadeError;

/// One element of the document and its path for error messages.
#[derive(Clone)]
pub(crate) struct Element<'a, 'input> {
    node: Node<'a, 'input>,
    path: String,
    source_name: &'a str,
}

impl<'a, 'input> Element<'a, 'input> {
    /// Wraps `node`, whose path (from the top-level node) is `path`.
    pub(crate) fn new(node: Node<'a, 'input>, path: String, source_name: &'a str) -> Self {
        Self {
            node,
            path,
            source_name,
        }
    }

    /// The XML attribute `name`, if present.
    pub(crate) fn attribute(&self, name: &str) -> Option<&'a str> {
        self.node.attribute(name)
    }

    /// An error about this element: `expected` is what a cascade needs here,
    /// `found` what the file has.
    pub(crate) fn invalid(
        &self,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> CascadeError {
        CascadeError::Invalid {
            source_name: self.source_name.to_owned(),
            element: self.path.clone(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// An error for a well-formed cascade feature this detector does not
    /// implement.
    pub(crate) fn unsupported(&self, what: impl Into<String>) -> CascadeError {
        CascadeError::Unsupported {
            source_name: self.source_name.to_owned(),
            element: self.path.clone(),
            what: what.into(),
        }
    }

    /// The child element `name`, if there is one (the first, as OpenCV's
    /// `FileNode::operator[]` takes).
    pub(crate) fn optional_child(&self, name: &str) -> Option<Element<'a, 'input>> {
        self.node
            .children()
            .find(|child| child.is_element() && child.tag_name().name() == name)
            .map(|node| Element::new(node, format!("{}/{name}", self.path), self.source_name))
    }

    /// The child element `name`; its absence is an error naming the path it
    /// should have had.
    pub(crate) fn child(&self, name: &str) -> Result<Element<'a, 'input>, CascadeError> {
        self.optional_child(name)
            .ok_or_else(|| CascadeError::Invalid {
                source_name: self.source_name.to_owned(),
                element: format!("{}/{name}", self.path),
                expected: format!("a <{name}> element inside <{}>", self.name()),
                found: "no such element".to_owned(),
            })
    }

    /// The first child element, as a top-level node: its path is its own tag
    /// name (`cascade`), since every OpenCV document has the same root.
    pub(crate) fn top_level(&self) -> Option<Element<'a, 'input>> {
        self.node
            .children()
            .find(Node::is_element)
            .map(|node| Element::new(node, node.tag_name().name().to_owned(), self.source_name))
    }

    /// The element's tag name.
    pub(crate) fn name(&self) -> &'a str {
        self.node.tag_name().name()
    }

    /// The items of a sequence: all child elements, which OpenCV names `_`.
    pub(crate) fn items(&self) -> Result<Vec<Element<'a, 'input>>, CascadeError> {
        self.node
            .children()
            .filter(Node::is_element)
            .enumerate()
            .map(|(index, node)| {
                let item =
                    Element::new(node, format!("{}/_[{index}]", self.path), self.source_name);
                if node.tag_name().name() == "_" {
                    Ok(item)
                } else {
                    Err(item.invalid(
                        format!("a sequence item <_> inside <{}>", self.name()),
                        format!("<{}>", node.tag_name().name()),
                    ))
                }
            })
            .collect()
    }

    /// The element's text (comments removed), which must not contain child
    /// elements.
    pub(crate) fn text(&self) -> Result<String, CascadeError> {
        if let Some(child) = self.node.children().find(Node::is_element) {
            return Err(self.invalid(
                "text content",
                format!("a child element <{}>", child.tag_name().name()),
            ));
        }
        Ok(self
            .node
            .children()
            .filter(Node::is_text)
            .filter_map(|text| text.text())
            .collect())
    }

    /// The whitespace-separated tokens of the element's text.
    pub(crate) fn tokens(&self) -> Result<Vec<String>, CascadeError> {
        Ok(self
            .text()?
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// The element's text as one trimmed word, e.g. `BOOST`.
    pub(crate) fn word(&self) -> Result<String, CascadeError> {
        let tokens = self.tokens()?;
        match tokens.as_slice() {
            [word] => Ok(word.clone()),
            _ => Err(self.invalid("one word", describe_tokens(&tokens))),
        }
    }

    /// The element's text as one integer.
    pub(crate) fn integer(&self) -> Result<i64, CascadeError> {
        let tokens = self.tokens()?;
        match tokens.as_slice() {
            [token] => {
                parse_integer(token).ok_or_else(|| self.invalid("an integer", quoted(token)))
            }
            _ => Err(self.invalid("one integer", describe_tokens(&tokens))),
        }
    }

    /// The element's text as one finite real number.
    pub(crate) fn real(&self) -> Result<f64, CascadeError> {
        let tokens = self.tokens()?;
        match tokens.as_slice() {
            [token] => {
                parse_real(token).ok_or_else(|| self.invalid("a finite number", quoted(token)))
            }
            _ => Err(self.invalid("one number", describe_tokens(&tokens))),
        }
    }
}

/// An integer as OpenCV writes them (optional sign, decimal digits).
pub(crate) fn parse_integer(token: &str) -> Option<i64> {
    token.parse().ok()
}

/// A finite real number; `inf` and `nan`, which Rust would accept, are not
/// numbers OpenCV writes into a cascade.
pub(crate) fn parse_real(token: &str) -> Option<f64> {
    token.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// `"token"`, shortened if it is long (a whole file pasted into one element
/// should not become a whole error message).
pub(crate) fn quoted(token: &str) -> String {
    const LIMIT: usize = 40;
    match token.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("\"{}...\"", &token[..cut]),
        None => format!("\"{token}\""),
    }
}

/// How many values a text has, for "expected one number, found ..." errors.
pub(crate) fn describe_tokens(tokens: &[String]) -> String {
    match tokens {
        [] => "an empty text".to_owned(),
        [one] => quoted(one),
        many => format!("{} values", many.len()),
    }
}

/// The path of the innermost element still open at byte `end` of `text`,
/// named as [`Element`] names paths (`opencv_storage` itself left out), for
/// reporting where a truncated or broken file stops making sense.
///
/// This is a deliberately small tag scanner, used only after a real parser has
/// rejected the text: it skips comments, processing instructions,
/// declarations and CDATA, and otherwise only tracks open and close tags.
pub(crate) fn open_element_at(text: &str, end: usize) -> Option<String> {
    let text = text.get(..end).unwrap_or(text);
    // Each open element: its tag name, its display name, and how many `_`
    // items it has had so far (for numbering the next one).
    let mut stack: Vec<(String, String, usize)> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let skip_to =
            |rest: &str, terminator: &str| rest.find(terminator).map(|at| at + terminator.len());
        let consumed = if rest.starts_with("<!--") {
            skip_to(rest, "-->")
        } else if rest.starts_with("<![CDATA[") {
            skip_to(rest, "]]>")
        } else if rest.starts_with("<?") {
            skip_to(rest, "?>")
        } else if rest.starts_with("<!") {
            skip_to(rest, ">")
        } else if let Some(closing) = rest.strip_prefix("</") {
            let name: String = closing.chars().take_while(|c| is_name_char(*c)).collect();
            if let Some(at) = stack.iter().rposition(|(open, _, _)| *open == name) {
                stack.truncate(at);
            }
            skip_to(rest, ">")
        } else {
            let name: String = rest[1..].chars().take_while(|c| is_name_char(*c)).collect();
            let tag_end = skip_to(rest, ">");
            let self_closing = tag_end.is_some_and(|at| rest[..at].ends_with("/>"));
            if !name.is_empty() && !self_closing {
                let display = match stack.last_mut() {
                    Some((_, _, items)) if name == "_" => {
                        *items += 1;
                        format!("_[{}]", *items - 1)
                    }
                    _ => name.clone(),
                };
                stack.push((name, display, 0));
            }
            tag_end
        };
        match consumed {
            Some(length) => rest = &rest[length..],
            None => break,
        }
    }
    let names: Vec<&str> = stack
        .iter()
        .skip_while(|(name, _, _)| name == "opencv_storage")
        .map(|(_, display, _)| display.as_str())
        .collect();
    (!names.is_empty()).then(|| names.join("/"))
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// The byte offset of 1-based `row` and `column` (in characters) in `text`,
/// as roxmltree reports error positions.
pub(crate) fn byte_offset(text: &str, row: u32, column: u32) -> usize {
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if index + 1 == row as usize {
            let within = line
                .char_indices()
                .nth((column as usize).saturating_sub(1))
                .map_or(line.len(), |(at, _)| at);
            return offset + within;
        }
        offset += line.len();
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_element_names_sequence_items_from_zero() {
        let text = "<?xml version=\"1.0\"?>\n<opencv_storage><cascade><stages><_><a>1</a></_><_><!-- <x> --><weak>";
        assert_eq!(
            open_element_at(text, text.len()).as_deref(),
            Some("cascade/stages/_[1]/weak")
        );
    }

    #[test]
    fn byte_offset_counts_rows_and_characters() {
        assert_eq!(byte_offset("ab\ncdé\nf", 2, 3), 5);
        assert_eq!(byte_offset("ab", 9, 1), 2);
    }

    #[test]
    fn reals_must_be_finite() {
        assert_eq!(parse_real("-1."), Some(-1.0));
        assert_eq!(parse_real("nan"), None);
        assert_eq!(parse_real("inf"), None);
        assert_eq!(parse_integer("1.5"), None);
    }
}
