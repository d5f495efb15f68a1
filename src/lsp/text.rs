//! Document text with LSP positions (zero-based line, UTF-16 column) and range edits.

/// Byte offset of an LSP position, clamped to the text (past-the-end lines/columns clamp to
/// the end of the text or line; a column inside a surrogate pair rounds down).
pub fn offset_of(text: &str, line: u32, character: u32) -> usize {
    let mut line_start = 0;
    for _ in 0..line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let mut units = 0u32;
    for (i, c) in text[line_start..line_end].char_indices() {
        let next = units + c.len_utf16() as u32;
        if next > character {
            return line_start + i;
        }
        units = next;
    }
    line_end
}

/// Zero-based (line, UTF-16 column) of a byte offset (clamped, rounded down to a char boundary).
pub fn position_of(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].encode_utf16().count() as u32)
}

/// Replaces the text between two LSP positions (in either order) with `new_text`.
pub fn apply_edit(text: &mut String, start: (u32, u32), end: (u32, u32), new_text: &str) {
    let a = offset_of(text, start.0, start.1);
    let b = offset_of(text, end.0, end.1);
    let (a, b) = (a.min(b), a.max(b));
    text.replace_range(a..b, new_text);
}

/// The identifier (ASCII letters, digits, `_`) touching byte `offset`, with its byte range.
pub fn word_at(text: &str, offset: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let offset = offset.min(bytes.len());
    let mut start = offset;
    while start > 0 && is_word(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = offset;
    while end < bytes.len() && is_word(bytes[end]) {
        end += 1;
    }
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_round_trip() {
        let text = "a = \"é𝔸\" x\nsecond";
        // `x` sits after 'a',' ','=',' ','"','é'(1),'𝔸'(2),'"',' ' = 10 UTF-16 units.
        let x = text.find('x').unwrap();
        assert_eq!(position_of(text, x), (0, 10));
        assert_eq!(offset_of(text, 0, 10), x);
        assert_eq!(offset_of(text, 1, 3), text.find("ond").unwrap());
        assert_eq!(offset_of(text, 1, 99), text.len());
        assert_eq!(offset_of(text, 7, 0), text.len());
        // Inside the surrogate pair rounds down to the start of 𝔸.
        assert_eq!(offset_of(text, 0, 7), text.find('𝔸').unwrap());
    }

    #[test]
    fn range_edits_apply() {
        let mut text = String::from("line one\nline two\n");
        apply_edit(&mut text, (1, 5), (1, 8), "2");
        assert_eq!(text, "line one\nline 2\n");
        apply_edit(&mut text, (0, 0), (0, 0), "// c\n");
        assert_eq!(text, "// c\nline one\nline 2\n");
        apply_edit(&mut text, (2, 0), (0, 0), "");
        assert_eq!(text, "line 2\n");
    }

    #[test]
    fn words() {
        let text = "fc1 = linear(800, 100)";
        assert_eq!(word_at(text, 1), Some((0, 3)));
        assert_eq!(word_at(text, 8), Some((6, 12)));
        assert_eq!(word_at(text, 4), None);
    }
}
