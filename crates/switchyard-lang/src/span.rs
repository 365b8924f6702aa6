//! Source files and byte spans into them.

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range `[start, end)` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end.max(start) as u32,
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

/// Every text a configuration was read from: files, `-e` strings, command
/// line definitions. Spans point into it; diagnostics render through it.
#[derive(Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        self.files.push(SourceFile {
            name: name.into(),
            text,
            line_starts,
        });
        FileId(self.files.len() as u32 - 1)
    }

    pub fn name(&self, file: FileId) -> &str {
        &self.files[file.0 as usize].name
    }

    pub fn text(&self, file: FileId) -> &str {
        &self.files[file.0 as usize].text
    }

    /// The text a span covers, widened to whole characters: a span that
    /// starts or ends inside a multi-byte character covers all of it.
    pub fn slice(&self, span: Span) -> &str {
        let text = self.text(span.file);
        let end = ceil_char_boundary(text, span.end as usize);
        let start = floor_char_boundary(text, (span.start as usize).min(end));
        &text[start..end]
    }

    /// One-based line and column (in characters) of a byte offset. An
    /// offset inside a multi-byte character is that character's column.
    pub fn line_col(&self, file: FileId, offset: usize) -> (usize, usize) {
        let f = &self.files[file.0 as usize];
        let offset = floor_char_boundary(&f.text, offset);
        let line = f.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = f.line_starts[line];
        let col = f.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The text of a one-based line, without its terminator.
    pub fn line_text(&self, file: FileId, line: usize) -> &str {
        let f = &self.files[file.0 as usize];
        let start = f.line_starts[line - 1];
        let end = f.line_starts.get(line).copied().unwrap_or(f.text.len());
        f.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// The largest character boundary at or before `i` (clamped to the text).
pub(crate) fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest character boundary at or after `i` (clamped to the text).
pub(crate) fn ceil_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let mut map = SourceMap::new();
        let f = map.add("a.click", "ab\ncd\n");
        assert_eq!(map.line_col(f, 0), (1, 1));
        assert_eq!(map.line_col(f, 4), (2, 2));
        assert_eq!(map.line_text(f, 2), "cd");
    }

    #[test]
    fn offsets_inside_a_character_land_on_its_boundary() {
        let mut map = SourceMap::new();
        let f = map.add("u.click", "//\n\u{e9}ET;\n");
        // Byte 4 is the second byte of 'é' (bytes 3..5).
        assert_eq!(map.line_col(f, 4), (2, 1));
        assert_eq!(map.slice(Span::new(f, 4, 5)), "\u{e9}");
        assert_eq!(map.slice(Span::new(f, 3, 4)), "\u{e9}");
        assert_eq!(map.slice(Span::new(f, 4, 4)), "\u{e9}");
        assert_eq!(map.line_col(f, 999), (3, 1));
    }
}
