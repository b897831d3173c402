//! The associated data a field value is bound to (FROZEN: stored values depend on it, and a Tink
//! program reading our columns must build the same bytes).
//!
//! `ad = "atrest-field-v1" || lp(table) || lp(column) [|| lp(row)]`, where `lp(x)` is `x`'s
//! length as a 4-byte big-endian integer followed by `x` (so no two different triples encode the
//! same way). Randomized columns add the row identity: a value copied to another row, or to
//! another column or table, fails to authenticate. Deterministic columns leave the row out so equal
//! values stay equal across rows (what makes `WHERE col = $1` work); they are still bound to
//! their table and column.
//!
//! The column jobs of the CLI use the primary key's text form (`pk::text`) as the row identity.

const LABEL: &[u8] = b"atrest-field-v1";

/// The part shared by every value of one column.
pub fn column_prefix(table: &str, column: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(LABEL.len() + 8 + table.len() + column.len());
    ad.extend_from_slice(LABEL);
    push_length_prefixed(&mut ad, table.as_bytes());
    push_length_prefixed(&mut ad, column.as_bytes());
    ad
}

/// `column_prefix || lp(row)`, reusing `buffer` to avoid an allocation per value.
pub fn with_row<'a>(buffer: &'a mut Vec<u8>, column_prefix: &[u8], row: &[u8]) -> &'a [u8] {
    buffer.clear();
    buffer.extend_from_slice(column_prefix);
    push_length_prefixed(buffer, row);
    buffer
}

/// Where [`Self::with_row`] builds a value's associated data: on the stack when it fits, as it
/// does for ordinary table, column and key names. Encrypting a 64-byte field costs about 200 ns,
/// and a heap buffer (allocate, grow, free) was a tenth of it.
pub struct AdBuffer {
    inline: [u8; 192],
    heap: Vec<u8>,
}

impl Default for AdBuffer {
    fn default() -> Self {
        Self {
            inline: [0; 192],
            heap: Vec::new(),
        }
    }
}

impl AdBuffer {
    /// The same bytes as [`with_row`].
    pub fn with_row(&mut self, column_prefix: &[u8], row: &[u8]) -> &[u8] {
        let total = column_prefix.len() + 4 + row.len();
        if total > self.inline.len() {
            return with_row(&mut self.heap, column_prefix, row);
        }
        let (prefix, rest) = self.inline.split_at_mut(column_prefix.len());
        prefix.copy_from_slice(column_prefix);
        rest[..4].copy_from_slice(&length_prefix(row));
        rest[4..4 + row.len()].copy_from_slice(row);
        &self.inline[..total]
    }
}

fn push_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&length_prefix(bytes));
    out.extend_from_slice(bytes);
}

/// `lp(x)`'s prefix: `x`'s length as a 4-byte big-endian integer.
fn length_prefix(bytes: &[u8]) -> [u8; 4] {
    #[allow(clippy::cast_possible_truncation)] // identifiers and row ids are far below 4 GiB
    (bytes.len() as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_frozen() {
        let prefix = column_prefix("users", "email");
        let mut buffer = Vec::new();
        let ad = with_row(&mut buffer, &prefix, b"42");
        let mut expected = b"atrest-field-v1".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"users");
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"email");
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(b"42");
        assert_eq!(ad, expected.as_slice());
    }

    #[test]
    fn the_stack_buffer_builds_the_same_bytes_inline_and_on_the_heap() {
        let prefix = column_prefix("users", "email");
        let mut reference = Vec::new();
        let mut buffer = AdBuffer::default();
        for row in [&b""[..], b"42", &[7; 150], &[9; 200]] {
            let expected = with_row(&mut reference, &prefix, row).to_vec();
            assert_eq!(buffer.with_row(&prefix, row), expected.as_slice());
        }
    }

    #[test]
    fn boundaries_cannot_shift() {
        assert_ne!(column_prefix("ab", "c"), column_prefix("a", "bc"));
    }
}
