//! ClickHouse's `RowBinary` format, both ways: little-endian numbers,
//! strings and arrays prefixed with their LEB128 length.
//!
//! Written here rather than taken from the `clickhouse` crate: that client
//! is async-only (the store's trait is synchronous and runs on blocking
//! threads), brings its own hyper stack beside the `ureq` the analyzer
//! already has, and targets servers far newer than the 18.16 this store
//! must speak to. The format itself is a few dozen lines.

use super::ChError;

/// Rows being encoded for one table.
#[derive(Default)]
pub(super) struct RowWriter {
    pub(super) buf: Vec<u8>,
    pub(super) rows: usize,
}

impl RowWriter {
    pub(super) fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(super) fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn len(&mut self, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    pub(super) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.len(v.len());
        self.buf.extend_from_slice(v);
        self
    }

    pub(super) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// A `Nullable(String)`: a null flag, then the string if any.
    pub(super) fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.u8(1),
            Some(s) => self.u8(0).str(s),
        }
    }

    pub(super) fn u64s(&mut self, v: &[u64]) -> &mut Self {
        self.len(v.len());
        for x in v {
            self.u64(*x);
        }
        self
    }

    /// Ends a row.
    pub(super) fn row(&mut self) {
        self.rows += 1;
    }

    pub(super) fn append(&mut self, other: RowWriter) {
        self.buf.extend_from_slice(&other.buf);
        self.rows += other.rows;
    }
}

/// Reads a `RowBinary` answer column by column, in the query's order.
pub(super) struct RowReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> RowReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        RowReader { data, at: 0 }
    }

    pub(super) fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ChError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or_else(|| ChError::Decode("the answer ends inside a row".into()))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ChError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn i64(&mut self) -> Result<i64, ChError> {
        Ok(i64::from_le_bytes(self.fixed()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, ChError> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, ChError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }

    pub(super) fn u8(&mut self) -> Result<u8, ChError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn f64(&mut self) -> Result<f64, ChError> {
        Ok(f64::from_le_bytes(self.fixed()?))
    }

    fn len(&mut self) -> Result<usize, ChError> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(ChError::Decode("a length longer than 64 bits".into()))
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], ChError> {
        let n = self.len()?;
        self.take(n)
    }

    pub(super) fn string(&mut self) -> Result<String, ChError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    pub(super) fn opt_string(&mut self) -> Result<Option<String>, ChError> {
        match self.u8()? {
            0 => Ok(Some(self.string()?)),
            _ => Ok(None),
        }
    }

    pub(super) fn u64s(&mut self) -> Result<Vec<u64>, ChError> {
        let n = self.len()?;
        // Each element needs eight bytes: a length past the answer is a
        // corrupt answer, not an allocation.
        if n > (self.data.len() - self.at) / 8 {
            return Err(ChError::Decode("an array longer than the answer".into()));
        }
        (0..n).map(|_| self.u64()).collect()
    }
}

/// A SQL string literal. ClickHouse 18.16's HTTP interface has no bound
/// parameters (they came in 19.x), so every value in a statement is a
/// literal: anything but plain letters, digits and a few marks is written
/// as a `\xHH` escape, so no input can end the literal.
pub(super) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.:/@ ".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.push('\'');
    out
}

/// A list of string literals for `IN (...)`.
pub(super) fn str_list(items: &[&str]) -> String {
    if items.is_empty() {
        // `IN ()` is a syntax error; no name is empty.
        return "''".to_owned();
    }
    items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(",")
}

/// A list of ids for `IN (...)`.
pub(super) fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        // `IN ()` is a syntax error; ids are never negative.
        return "-1".to_owned();
    }
    let mut out = String::with_capacity(ids.len() * 20);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_written() {
        let mut w = RowWriter::default();
        w.i64(-5)
            .u64(7)
            .f64(1.5)
            .str("héllo")
            .opt_str(None)
            .opt_str(Some("x"))
            .u64s(&[1, 2, 3]);
        w.bytes(&[0u8; 300]);
        let mut r = RowReader::new(&w.buf);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.f64().unwrap(), 1.5);
        assert_eq!(r.string().unwrap(), "héllo");
        assert_eq!(r.opt_string().unwrap(), None);
        assert_eq!(r.opt_string().unwrap().as_deref(), Some("x"));
        assert_eq!(r.u64s().unwrap(), vec![1, 2, 3]);
        assert_eq!(r.bytes().unwrap().len(), 300);
        assert!(r.done());
        assert!(r.u8().is_err(), "reading past the end is an error");
    }

    #[test]
    fn a_hostile_array_length_is_refused_without_allocating() {
        let mut w = RowWriter::default();
        w.len(usize::MAX >> 1);
        assert!(RowReader::new(&w.buf).u64s().is_err());
    }

    #[test]
    fn literals_cannot_be_ended_by_input() {
        assert_eq!(lit("a'b\\c"), "'a\\x27b\\x5Cc'");
        assert_eq!(lit("svc-1.x"), "'svc-1.x'");
    }
}
